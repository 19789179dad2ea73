from sjdl.cli import main

main()
