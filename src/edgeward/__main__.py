from edgeward.cli.main import app

app(prog_name="edgeward")
