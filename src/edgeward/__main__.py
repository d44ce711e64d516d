import signal
import sys

if "--role" in sys.argv:
    # A child of serve (delivery or another receiving process) may get SIGHUP, passed on by its
    # supervisor, before its loop has a handler: ignored until then rather than fatal.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.argv[1:2] == ["serve"]:
        # Not through the whole command-line application: edgeward.roles says why.
        from edgeward.roles import main as role_main

        sys.exit(role_main(sys.argv[1:]))

from edgeward.cli.main import app  # after the signal disposition, on purpose

app(prog_name="edgeward")
