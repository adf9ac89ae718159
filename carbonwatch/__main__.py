from carbonwatch.cli import main

raise SystemExit(main())
