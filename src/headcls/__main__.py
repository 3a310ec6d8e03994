from headcls.cli.main import run

run()
