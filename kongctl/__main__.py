from kongctl.cli.main import main

main()
