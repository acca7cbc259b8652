"""The RTMS simulator: a docs-faithful Zoom RTMS server and webhook sender, with fault injection.

Public API (everything else is an implementation module)::

    async with open_simulator(SimulatorConfig(profile="doc-2026")) as sim:
        eng = await sim.start(Scenario(product=Product.MEETING))
        ...  # connect a client to eng.target.server_urls, or let the webhook drive it
        await eng.finished.wait()
"""

from __future__ import annotations

from recorder.simulator.engagement import Engagement as Engagement
from recorder.simulator.engagement import Target as Target
from recorder.simulator.profiles import DOC_2026 as DOC_2026
from recorder.simulator.profiles import LEGACY_2025 as LEGACY_2025
from recorder.simulator.profiles import PROFILES as PROFILES
from recorder.simulator.profiles import ZOOM_MOCK as ZOOM_MOCK
from recorder.simulator.profiles import DuplicatePolicy as DuplicatePolicy
from recorder.simulator.profiles import Profile as Profile
from recorder.simulator.profiles import Status as Status
from recorder.simulator.profiles import get_profile as get_profile
from recorder.simulator.scenario import Action as Action
from recorder.simulator.scenario import AudioLayout as AudioLayout
from recorder.simulator.scenario import Product as Product
from recorder.simulator.scenario import Scenario as Scenario
from recorder.simulator.scenario import Speaker as Speaker
from recorder.simulator.scenario import Step as Step
from recorder.simulator.scenario import load_scenario as load_scenario
from recorder.simulator.simulator import Simulator as Simulator
from recorder.simulator.simulator import SimulatorConfig as SimulatorConfig
from recorder.simulator.simulator import open_simulator as open_simulator
from recorder.simulator.stats import EngagementStats as EngagementStats
