from agx.cli.main import main

raise SystemExit(main())
