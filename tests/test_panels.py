"""Panels and marker-name recognition: spellings, confusions to avoid, panel files, find_var."""

from __future__ import annotations

import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cytokit import _keys as K
from cytokit.errors import MarkerError, PanelError
from cytokit.panels import ROLES, canonical_marker, find_var, load_panel, resolve_markers

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gatingml2-compliance"

SPELLINGS = {
    "FoxP3": "FOXP3",
    "Foxp3 AF647": "FOXP3",
    "FOXP3-PE": "FOXP3",
    "FOXP-3": "FOXP3",
    "APCCy7 - CD4": "CD4",
    "CD4 APC-H7": "CD4",
    "CD4_APC-H7": "CD4",
    "hCD4": "CD4",
    "CD127 (IL-7Ra)": "CD127",
    "IL7R": "CD127",
    "IL-7Rα": "CD127",
    "CD25 (IL-2Ra)": "CD25",
    "IL2RA": "CD25",
    "CD25PE": "CD25",
    "HLADR": "HLA-DR",
    "HLA DR": "HLA-DR",
    "HLA-DR BV650": "HLA-DR",
    "Ki-67": "Ki67",
    "KI67 FITC": "Ki67",
    "Ki-67 PerCP-eFluor 710": "Ki67",
    "HLA-DR APC-eFluor 780": "HLA-DR",
    "Near-IR Live/Dead": "Viability",
    "FITC-A :: CD4": "CD4",
    "CD4-A": "CD4",
    "CD8-H": "CD8",
    "CD16/56": "CD16",
    "FoxP3 Alexa Fluor® 488": "FOXP3",
    "CD45RA ECD": "CD45RA",
    "CD3 BUV 395": "CD3",
    "CD25 (M-A251) BV421": "CD25",
    "cd3 (UCHT1) BUV496": "CD3",
    "NCAM1 (HCD56) BV711": "CD56",
    "FOXP3 (259D/C7) PE": "FOXP3",
    "CD127 (HIL-7R-M21) BV421": "CD127",
    "HLA-DR APC-H7 G46-6": "HLA-DR",
    "AF488 Ki-67": "Ki67",
    "BV711 - Ki 67": "Ki67",
    "Ki 67": "Ki67",
    "CD45 RA": "CD45RA",
    "CD45RA BV605": "CD45RA",
    "CD45Ra": "CD45RA",
    "Helios": "Helios",
    "Helios (IKZF2)": "Helios",
    "CD56 (NCAM)": "CD56",
    "NCAM1": "CD56",
    "CD3 PerCP-Cy5.5": "CD3",
    "PerCP-Cy5.5 - CD3": "CD3",
    "Alexa Fluor 647 - FoxP3": "FOXP3",
    "eFluor 450 FOXP3": "FOXP3",
    "CD8a": "CD8",
    "L/D Aqua - Viability": "Viability",
    "Live Dead": "Viability",
    "LiveDead": "Viability",
    "Live_Dead": "Viability",
    "LIVE/DEAD Fixable Aqua": "Viability",
    "LIVE/DEAD Blue": "Viability",
    "Zombie NIR": "Viability",
    "Zombie Aqua": "Viability",
    "7-AAD": "Viability",
    "DAPI": "Viability",
    "FVS780": "Viability",
    "FVS575V": "Viability",
    "eF780": "Viability",
    "Aqua": "Viability",
    "LD": "Viability",
    "Viability": "Viability",
    "Viability Dye FVS510": "Viability",
    "FSC-A": "FSC-A",
    "FSC-H": "FSC-H",
    "SSC-A": "SSC-A",
    "SSC-H": "SSC-H",
    "FSC-W": "FSC-W",
    "FS INT": "FSC-A",
    "SS INT": "SSC-A",
    "FSC": "FSC-A",
    "SSC": "SSC-A",
    "FSC-Height": "FSC-H",
    "Time": "Time",
    "TIME": "Time",
    "HDR-T": "Time",
    "Time (102.40 sec.)": "Time",
    "142Nd_CD19": "CD19",
    "PD-1 BV421": "PD-1",
    "IFN-γ": "IFNg",
    # helper-subset markers (SLE trial): chemokine receptors by name or CD number, cytokines
    "CXCR5 BB515": "CXCR5",
    "CD185 (CXCR5) BV421": "CXCR5",
    "CD185": "CXCR5",
    "PD1": "PD-1",
    "CD279 PE-Cy7": "PD-1",
    "CXCR3 APC": "CXCR3",
    "CD183": "CXCR3",
    "CCR6 BV785": "CCR6",
    "CD196 PE": "CCR6",
    "CCR4 PE-Cy7": "CCR4",
    "CD194": "CCR4",
    "IL-17A BV421": "IL-17A",
    "IL17A": "IL-17A",
    "IL-17": "IL-17A",
    "IFN-g APC": "IFNg",
    "IFN gamma": "IFNg",
    "IFNg PE-Cy7": "IFNg",
    "IL-4 PE": "IL-4",
    "IL4": "IL-4",
}

# different markers that substring search would confuse
CONFUSIONS = {
    "CD45": "CD45",
    "CD45 FITC": "CD45",
    "CD40": "CD40",
    "CD45RO": "CD45RO",
    "CD80": "CD80",
    "CD33": "CD33",
    "CD33 PE": "CD33",
    "CD254": "CD254",
    "CD8b": "CD8b",
    "CD8 B PE": "CD8",
    "CD127": "CD127",
    "CD30": "CD30",
    "CD56bright": "CD56",
    "CXCR4": None,  # not CXCR3/CXCR5
    "IL-21": None,  # not IL-2
    "CD194 PE": "CCR4",  # not CD19
    "CD161": "CD161",  # human NKR-P1A, not the mouse NK1.1 (CD161c)
    "CD45RA": "CD45RA",  # not B220 (CD45R)
    "TCRab": "TCRab",  # not TCRgd
}

# mouse panels and acquisition software that drop dots and Greek letters (FlowSOM's example file
# writes NK1.1 as "NK1/1", and "TCRyd" for gamma-delta)
MOUSE = {
    "NK1/1": "NK1.1",
    "NK1 1": "NK1.1",
    "NK1.1 PE": "NK1.1",
    "NK-1.1": "NK1.1",
    "TCRyd": "TCRgd",
    "TCR yd APC": "TCRgd",
    "TCRb APC-Cy7": "TCRab",
    "TCR beta": "TCRab",
    "CD45R/B220": "B220",
    "Ly-6G": "Ly6G",
    "I-A/I-E": "MHCII",
    "F4/80 BV421": "F4/80",
}


@pytest.mark.parametrize(("text", "expected"), list(MOUSE.items()))
def test_mouse_markers_and_typed_greek_letters_are_recognised(text, expected):
    assert canonical_marker(text) == expected


NOT_MARKERS = [
    "",
    "EMPTY",
    "Blank",
    "-",
    "none",
    "FITC-A",
    "PE-Cy7-A",
    "FL1-H",
    "FL4-Height",
    "BV421",
]
NOT_MARKERS += ["Comp-APC-A", "V2-A", "B530", "Nd142Di", "GFP/FITC-A", "HDR-CE"]


@pytest.mark.parametrize(("text", "expected"), list(SPELLINGS.items()))
def test_spellings_are_recognised(text, expected):
    assert canonical_marker(text) == expected


@pytest.mark.parametrize(("text", "expected"), list(CONFUSIONS.items()))
def test_similar_markers_are_not_confused(text, expected):
    assert canonical_marker(text) == expected


@pytest.mark.parametrize("text", NOT_MARKERS)
def test_blank_and_fluorochrome_only_names_are_not_markers(text):
    assert canonical_marker(text) is None


FLUORS = ["FITC", "PE", "APC", "PE-Cy7", "APC-H7", "BV421", "BV 605", "BUV395", "PerCP-Cy5.5", "AF647",
          "Alexa Fluor 700", "PE-CF594", "eF450", "APC-Cy7", "PECy5", "BB515", "A488", "V500", "AF488"]  # fmt: skip
SPELLED = {
    "CD3": ["CD3", "cd3", "CD3e", "hCD3"],
    "CD4": ["CD4", "cd4", "hCD4"],
    "CD8": ["CD8", "CD8a", "cd8"],
    "CD25": ["CD25", "CD25 (IL-2Ra)", "IL2RA", "IL-2Rα"],
    "CD127": ["CD127", "CD127 (IL-7Ra)", "IL7RA", "IL7R"],
    "FOXP3": ["FoxP3", "FOXP3", "Foxp3", "FOXP-3"],
    "CD45RA": ["CD45RA", "CD45 RA", "CD45Ra", "cd45ra"],
    "Ki67": ["Ki67", "Ki-67", "KI67", "Ki 67"],
    "HLA-DR": ["HLA-DR", "HLADR", "HLA DR"],
    "Helios": ["Helios", "HELIOS", "Helios (IKZF2)", "IKZF2"],
    "CD56": ["CD56", "CD56 (NCAM)", "NCAM1"],
}
SPELLING_PAIRS = [(m, s) for m, spellings in SPELLED.items() for s in spellings]
TEMPLATES = ["{m} {f}", "{f} - {m}", "{m}", "{m}-{f}", "{m} ({f})", "{f} {m}", "{m}_{f}", "{f}-{m}"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SPELLING_PAIRS), st.sampled_from(FLUORS), st.sampled_from(TEMPLATES))
def test_any_spelling_fluorochrome_layout_is_recognised(pair, fluor, template):
    marker, spelling = pair
    assert canonical_marker(template.format(m=spelling, f=fluor)) == marker


def test_simulated_trial_panels_resolve_completely():
    from cytokit.datasets import _panel as panel_mod  # the project's own: fail, never skip

    for seed in range(60):
        rng = np.random.default_rng(seed)
        for naming in panel_mod.NAMING_STYLES:
            panel = panel_mod.draw_panel(rng, naming=naming)
            stains = panel_mod.stain_names(rng, panel, p_change=0.7)
            channels = ["FSC-A", "FSC-H", "SSC-A", *panel.channels, panel.time_name]
            markers, roles = resolve_markers(channels, ["", "", "", *stains, ""])
            assert markers == ["FSC-A", "FSC-H", "SSC-A", *panel.markers, "Time"], stains
            assert "" not in roles


def test_resolve_prefers_stain_then_channel_and_gives_roles():
    channels = ["FSC-A", "SSC-A", "BV421-A", "PE-A", "CD3", "Time"]
    stains = ["", "", "CD127 BV421", "FOXP3 PE", "", ""]
    markers, roles = resolve_markers(channels, stains)
    assert markers == ["FSC-A", "SSC-A", "CD127", "FOXP3", "CD3", "Time"]
    assert roles == ["scatter", "scatter", "lineage", "lineage", "lineage", "time"]


def test_resolve_duplicates_keep_the_first_and_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="cytokit"):
        markers, _ = resolve_markers(["FITC-A", "PE-A"], ["CD3 FITC", "cd3"])
    assert markers == ["CD3", ""]
    assert "CD3" in caplog.text


def test_resolve_keeps_unknown_stain_words_without_role():
    markers, roles = resolve_markers(
        ["BV421-A", "PE-A", "FITC-A"], ["Foo123 BV421", "PE", "FL4-Height"]
    )
    assert markers == ["Foo123", "", ""]
    assert roles == ["", "", ""]


def _write_panel(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


def test_panel_names_aliases_and_channels_win(tmp_path):
    path = _write_panel(
        tmp_path,
        "name: mine\nmarkers:\n"
        "  - {name: FoxP3, aliases: [Scurfin], role: lineage}\n"
        "  - {name: IL2RA, aliases: [CD25], channel: PE-A, role: functional}\n"
        "  - {name: Ki-67, channel: FITC-A, role: functional}\n",
    )
    panel = load_panel(path)
    assert panel.name == "mine" and panel.names == ["FoxP3", "IL2RA", "Ki-67"]
    assert canonical_marker("Scurfin AF647", panel) == "FoxP3"
    assert (
        canonical_marker("FOXP3 AF647", panel) == "FoxP3"
    )  # the panel's spelling of a known marker
    assert canonical_marker("MKI67", panel) == "Ki-67"  # built-in alias, panel name
    markers, roles = resolve_markers(
        ["PE-A", "FITC-A", "APC-A"], ["", "CD45 FITC", "scurfin"], panel
    )
    # PE-A has no stain: the panel's usual channel names it; FITC-A's stain says CD45, which wins
    assert markers == ["IL2RA", "CD45", "FoxP3"]
    assert roles == ["functional", "lineage", "lineage"]


def test_shipped_sle_panel_has_treg_and_helper_markers():
    panel = load_panel("sle_helper")
    needed = {"CD3", "CD4", "CD25", "CD127", "FOXP3", "CD45RA", "CXCR5", "PD-1", "CXCR3", "CCR6", "CCR4",
              "IL-17A", "IFNg", "IL-4", "Viability", "FSC-A", "SSC-A", "Time"}  # fmt: skip
    assert needed <= set(panel.names)
    assert canonical_marker("CD194 BV650", panel) == "CCR4"


def test_shipped_treg_panel_has_the_trial_markers():
    panel = load_panel("ldil2_treg")
    needed = {"CD3", "CD4", "CD8", "CD25", "CD127", "FOXP3", "CD45RA", "Ki67", "HLA-DR", "Helios", "CD56",
              "Viability", "FSC-A", "FSC-H", "SSC-A", "Time"}  # fmt: skip
    assert needed <= set(panel.names)
    assert all(m.role in ROLES for m in panel.markers)
    assert panel.role("Viability") == "viability" and panel.role("FSC-A") == "scatter"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("markers: [\n  - name: CD3\n", "invalid YAML"),
        ("name: x\n", "non-empty 'markers'"),
        ("markers:\n  - {role: lineage}\n", "needs a 'name'"),
        ("markers:\n  - {name: CD3, role: marker}\n", "role 'marker'"),
        ("markers:\n  - {name: CD3}\n  - {name: CD3}\n", "defined twice"),
        (
            "markers:\n  - {name: CD3, aliases: [X1]}\n  - {name: CD4, aliases: [x-1]}\n",
            "claimed by both",
        ),
        ("markers:\n  - {name: CD3, colour: red}\n", "unknown field"),
    ],
)
def test_bad_panel_files_give_one_line_errors(tmp_path, text, fragment):
    path = _write_panel(tmp_path, text)
    with pytest.raises(PanelError) as err:
        load_panel(path)
    message = str(err.value)
    assert fragment in message and "mine.yaml" in message and "\n" not in message


def test_unknown_panel_name_is_a_panel_error():
    with pytest.raises(PanelError, match="no panels definition 'nope'"):
        load_panel("nope")


def _adata(file: str = "P01_D0.fcs") -> ad.AnnData:
    var = pd.DataFrame(
        {
            K.CHANNEL: ["FSC-A", "PE-A", "APC-A"],
            K.MARKER: ["FSC-A", "FOXP3", ""],
            K.STAIN: ["", "FoxP3 PE", "Mystery"],
        },
        index=["FSC-A", "FOXP3", "APC-A"],
    )
    adata = ad.AnnData(np.zeros((2, 3), dtype=np.float32), var=var)
    adata.uns[K.SAMPLE_INFO] = {"file": f"/data/{file}", "sample": "P01_D0", "warnings": []}
    return adata


def test_find_var_by_marker_spelling_channel_and_stain():
    adata = _adata()
    assert find_var(adata, "FOXP3") == "FOXP3"
    assert find_var(adata, "Foxp3") == "FOXP3"  # a spelling of the marker
    assert find_var(adata, "PE-A") == "FOXP3"  # channel fallback
    assert find_var(adata, "apc-a") == "APC-A"  # case-insensitive channel
    assert find_var(adata, "mystery") == "APC-A"  # raw stain


def test_find_var_missing_names_the_sample_file():
    with pytest.raises(MarkerError) as err:
        find_var(_adata("P07_D8.fcs"), "CD25")
    assert str(err.value).startswith("P07_D8.fcs: ") and "CD25" in str(err.value)


def test_real_calibur_file_markers():
    path = SHARED / "data1.fcs"
    if not path.is_file():
        pytest.skip(f"GatingML compliance data not found at {path.parent}")
    from cytokit.io import read_fcs

    adata = read_fcs(path)
    assert {"CD3", "CD4", "CD8", "FSC-H", "SSC-H", "Time"} <= set(adata.var_names)
    assert adata.var.loc["CD4", K.CHANNEL] == "FL1-H"
    assert adata.var.loc["FSC-H", K.ROLE] == "scatter"
