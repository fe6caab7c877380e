from fusionapp.cli import main

main()
