from kongctl.cli.root import main

main()
