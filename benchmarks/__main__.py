"""``python -m benchmarks``: run the suite and print the table."""

from benchmarks.run import main

raise SystemExit(main())
