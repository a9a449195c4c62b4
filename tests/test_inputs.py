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
