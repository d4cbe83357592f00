from clusterodm.sim.main import main

raise SystemExit(main())
