"""The workshop hub's JupyterHub configuration: `mmcourse hub` runs `jupyterhub -f` on this file.

It reads the settings that `mmcourse hub` saved ($MMCOURSE_HUB_SETTINGS) and applies
`mmcourse.hub.config.workshop`: the course, the exchange, PAM and one process per learner. To
change something for your site, copy this file next to the settings and add lines after it.
Imported as a module (not by JupyterHub), it does nothing.
"""

import os

from mmcourse.hub.config import HubSettings, workshop

__all__: list[str] = []

if "get_config" in globals():  # JupyterHub runs config files with get_config defined
    c = get_config()  # noqa: F821
    workshop(c, HubSettings.load(os.environ["MMCOURSE_HUB_SETTINGS"]))
