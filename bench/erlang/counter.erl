%% The Erlang side of `make bench`'s comparison (bench/bench_erlang.py runs it).
%%
%% A counter gen_server, registered as `counter`: the call `incr` adds one and returns the new
%% count, like the hotswap counter's input. It runs on one distributed node; bench/2, on a second
%% node, makes gen_server:call({counter, ServerNode}, incr) round trips over the distribution
%% connection with 1 client process and with 16 concurrent ones, and prints one line per run:
%%
%%     clients=1 calls=29350 seconds=2.000 rate=14675
%%
%% Compiled by `erlc` into a temporary directory at bench time; no .beam is kept.
-module(counter).
-behaviour(gen_server).

-export([start/0, bench/2]).
-export([init/1, handle_call/3, handle_cast/2]).

%% Server node: start the counter (not linked to the -eval process, which exits).
start() ->
    {ok, _} = gen_server:start({local, counter}, ?MODULE, 0, []),
    io:format("ready ~s~n", [node()]),
    ok.

init(Count) -> {ok, Count}.

handle_call(incr, _From, Count) -> {reply, Count + 1, Count + 1}.

handle_cast(_Message, Count) -> {noreply, Count}.

%% Client node: `bench(ServerNode, Seconds)`, with both arguments as strings (from -eval).
bench(ServerNode, Seconds) when is_list(ServerNode) ->
    Server = {counter, list_to_atom(ServerNode)},
    Millis = round(list_to_float(Seconds) * 1000),
    true = is_integer(call(Server)),  % connects the two nodes, and checks the reply
    warm(Server, 1000),
    lists:foreach(fun(Clients) -> run(Server, Clients, Millis) end, [1, 16]).

warm(_Server, 0) -> ok;
warm(Server, N) -> call(Server), warm(Server, N - 1).

call(Server) -> gen_server:call(Server, incr, 5000).

%% `Clients` processes call until the same deadline; each reports how many calls it made.
run(Server, Clients, Millis) ->
    Parent = self(),
    Started = erlang:monotonic_time(microsecond),
    Deadline = Started + Millis * 1000,
    Pids = [spawn_link(fun() -> Parent ! {self(), loop(Server, Deadline, 0)} end)
            || _ <- lists:seq(1, Clients)],
    Calls = lists:sum([receive {Pid, N} -> N end || Pid <- Pids]),
    Elapsed = (erlang:monotonic_time(microsecond) - Started) / 1.0e6,
    io:format("clients=~b calls=~b seconds=~.3f rate=~b~n",
              [Clients, Calls, Elapsed, round(Calls / Elapsed)]).

loop(Server, Deadline, N) ->
    case erlang:monotonic_time(microsecond) < Deadline of
        true -> call(Server), loop(Server, Deadline, N + 1);
        false -> N
    end.
