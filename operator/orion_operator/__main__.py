from orion_operator.cli import main

main()
