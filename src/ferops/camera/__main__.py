"""`python -m ferops.camera` is `ferops-camera`."""

from ferops.camera.cli import main

raise SystemExit(main())
