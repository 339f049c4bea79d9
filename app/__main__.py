from app.entrypoints.cli import main

raise SystemExit(main())
