"""Static limits the decoder and verifier enforce (docs/bytecode.md, "Limits").

They keep every later pass (code generation, Python's own parser and compiler, value walks)
within bounded recursion, memory and time.
"""

MAX_MODULE_BYTES = 16 * 1024 * 1024
MAX_TYPES = 65_536
MAX_FUNCTIONS = 16
MAX_CODE = 65_536  # instructions per function
MAX_NESTING = 48  # CASE/BRANCH nesting, which becomes nested `if` in generated Python
MAX_TYPE_DEPTH = 48  # height of any type, which bounds value and tuple-expression nesting
MAX_TYPE_SIZE = 65_536  # nodes of any type as a tree, which bounds every walk over a value
MAX_STACK = 65_536
MAX_CUSTOM_SECTIONS = 64
MAX_FOLD_NESTING = 8  # folds become nested `for` loops; Python allows 20 nested blocks
#: Fuel each step, init and migration may use unless the node is told otherwise (--fuel).
DEFAULT_FUEL = 2_000_000
