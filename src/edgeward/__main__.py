import signal
import sys

if "--role" in sys.argv:
    # A child of serve (delivery or another receiving process) may get SIGHUP, passed on by its
    # supervisor, before its loop has a handler: ignored until then rather than fatal.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

from edgeward.cli.main import app  # after the signal disposition, on purpose

app(prog_name="edgeward")
