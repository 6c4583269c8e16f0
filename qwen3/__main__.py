from qwen3.cli import main

raise SystemExit(main())
