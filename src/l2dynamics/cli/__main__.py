from l2dynamics.cli import main

main()
