"""`python -m gateway.demo`: the demo stack as plain processes (see runner.py)."""

from gateway.demo.runner import main

raise SystemExit(main())
