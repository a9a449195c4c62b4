"""Sample discovery: folders, file-name patterns, manifests and their errors."""

from pathlib import Path

import pytest

from cytokit.errors import ManifestError
from cytokit.pipeline import discover_samples


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_folder_names_give_patient_timepoint_and_day(tmp_path):
    _touch(tmp_path, "P01_D0.fcs", "P01_D8.FCS", "ctrl.fcs", "notes.txt")
    specs = {s.sample: s for s in discover_samples(tmp_path)}
    assert set(specs) == {"P01_D0", "P01_D8", "ctrl"}
    assert (specs["P01_D8"].patient, specs["P01_D8"].timepoint, specs["P01_D8"].day) == (
        "P01",
        "D8",
        8.0,
    )
    assert specs["ctrl"].patient is None and specs["ctrl"].day is None


def test_manifest_in_folder_wins_and_carries_metadata(tmp_path):
    _touch(tmp_path, "a.fcs", "b.fcs")
    (tmp_path / "manifest.csv").write_text(
        "file,patient,timepoint,day,disease\na.fcs,P1,baseline,0,SLE\nb.fcs,P1,week1,8,SLE\n"
    )
    specs = discover_samples(tmp_path)
    assert [s.timepoint for s in specs] == ["baseline", "week1"]
    assert specs[1].day == 8.0
    assert specs[0].metadata()["disease"] == "SLE"
    assert specs[0].file == tmp_path / "a.fcs"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("file,patient\na.fcs,P1\n", r"lacks column\(s\) timepoint"),
        ("file,patient,timepoint,day\na.fcs,P1,D0,zero\n", "is not a number"),
        ("file,patient,timepoint\n", "no rows"),
    ],
)
def test_bad_manifest_is_a_one_line_error_naming_it(tmp_path, text, problem):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=problem) as info:
        discover_samples(path)
    assert "m.csv" in str(info.value) and "\n" not in str(info.value)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(ManifestError, match="not a folder"):
        discover_samples(tmp_path / "nope")
    with pytest.raises(ManifestError, match=r"no \*\.fcs"):
        discover_samples(tmp_path)


def test_duplicate_stems_get_unique_sample_names(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    _touch(tmp_path / "x", "S1.fcs")
    _touch(tmp_path / "y", "S1.fcs")
    (tmp_path / "m.csv").write_text("file,patient,timepoint\nx/S1.fcs,P1,D0\ny/S1.fcs,P2,D0\n")
    names = [s.sample for s in discover_samples(tmp_path / "m.csv")]
    assert len(set(names)) == 2 and names[0] == "S1"


@pytest.mark.parametrize(
    "stem, patient, control",
    [
        ("P01_D0", "P01", ""),
        ("P01_D0_FMO_Ki67", "P01", "FMO:Ki67"),
        ("P01_D0 Isotype HLA-DR", "P01", "isotype:HLA-DR"),
        ("P03_D8_iso_CD25", "P03", "isotype:CD25"),
        ("Unstained", None, "unstained"),
        ("Compensation Controls_FITC Stained Control", None, "compensation"),
        ("CD4 single stain", None, "compensation"),
        ("ISO_TOPE", "ISO", ""),  # "iso" without a marker after it is not a control
        ("Specimen_001_P01_D0", None, ""),
    ],
)
def test_control_wells_are_recognised_by_their_names(tmp_path, stem, patient, control):
    """Without a manifest, control wells as labs and FACSDiva name them are kept out of the trial
    (the manifest's ``control`` column); their patient and timepoint still come from the name."""
    (tmp_path / f"{stem}.fcs").write_bytes(b"")
    (spec,) = discover_samples(tmp_path)
    assert spec.patient == patient
    assert spec.meta.get("control", "") == control
    assert spec.sample == stem


def test_a_control_well_named_so_is_kept_out_of_the_trial(small_trial, tmp_path):
    """An FMO well named ``P01_D0_FMO_Ki67`` sets P01's Ki67 thresholds and is not a trial sample."""
    import shutil

    import pandas as pd

    import cytokit as ck

    data = tmp_path / "data"
    data.mkdir()
    stained = sorted(small_trial.glob("P01_*.fcs"))
    for path in stained:
        shutil.copy(path, data / path.name)
    shutil.copy(stained[0], data / f"{stained[0].stem}_FMO_Ki67.fcs")
    result = ck.run(data, tmp_path / "out", jobs=1, cluster=False, figures=False)
    qc = result.qc.set_index("sample")
    assert qc.loc[f"{stained[0].stem}_FMO_Ki67", "control"] == "FMO:Ki67"
    for path in stained:  # the control's Ki67 percentile became the stained samples' threshold
        assert "Ki67" in str(qc.loc[path.stem, "control_gates"])
    stats = pd.read_csv(tmp_path / "out" / "stats.csv")
    assert (stats["n_pairs"] <= 1).all()  # one patient: the control is not a second pair
