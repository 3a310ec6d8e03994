from headcls.cli import run

run()
