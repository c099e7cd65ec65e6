import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C before main() could catch it: one line, not a traceback
    print("embedseg: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
