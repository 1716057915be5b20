"""Grid carbon intensity and data-centre overhead per region, read from the catalog with their provenance.

The default catalog's `[[regions]]` carry annual-average grid intensity (gCO2e/kWh) with the source of each
figure (Google Cloud region-carbon-info 2023, from Electricity Maps hourly data) and a PUE. Device energy
from the engine is IT (GPU) energy; facility energy = IT x PUE, and emissions = facility kWh x intensity.
A region the catalog does not describe gets NaN emissions and a note saying so, never a made-up figure.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.catalog import Catalog
from planner.errors import NotFoundError

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Grid:
    """Emission factor and PUE of one region, with where they come from."""

    region: str
    g_per_kwh: float
    pue: float
    source: str

    def facility_kwh(self, it_energy_j: float) -> float:
        return it_energy_j * self.pue / J_PER_KWH

    def co2_kg(self, it_energy_j: float) -> float:
        return self.facility_kwh(it_energy_j) * self.g_per_kwh / 1000.0


def grid_for(catalog: Catalog, region: str) -> Grid:
    """The region's grid figures; unknown regions get NaN intensity, PUE 1 and a note."""
    try:
        r = catalog.region(region)
    except NotFoundError:
        return Grid(region, float("nan"), 1.0, f"region {region!r} not in the catalog: emissions unknown")
    return Grid(r.name, float(r.grid_gco2_per_kwh), float(r.pue), r.source)
