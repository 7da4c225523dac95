from mmcourse.course.cli import main

raise SystemExit(main())
