"""A panel YAML template from one FCS file's channels (``cytokit panel FILE.fcs``).

Plate cytometers and some exports write no marker names (``$PnS``), only detector channels (``VL1-H``,
``BL1-A``). The template lists every parameter in the format :func:`cytokit.panels.load_panel` reads:
markers the file names are filled in; a channel without a marker gets its channel name as a placeholder
``name`` and a ``FILL IN`` comment, so mapping ``VL1-H`` to CD25 is one edit (``name: CD25``). The unedited
template is already a valid panel that changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from . import _keys as K

__all__ = ["panel_template"]

_SUGGEST = "CD25, CD127, FOXP3, CD45RA, CD3, CD4, CD8, Viability"


def _yaml_text(value: str) -> str:
    """``value`` as a YAML scalar: bare when that reads back as the same text, else double-quoted."""
    bare = str(value)
    try:
        if bare and yaml.safe_load(f"k: {bare}") == {"k": bare} and "#" not in bare:
            return bare
    except yaml.YAMLError:
        pass
    return '"' + bare.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _squash(text: str) -> str:
    from .panels import _squash as squash

    return squash(text)


def _names_something(stain: str) -> bool:
    from .panels import _EMPTY

    return bool(stain) and stain.strip().lower() not in _EMPTY


def panel_template(path: str | Path) -> str:
    """YAML text of a panel template for the FCS file at ``path`` (see the module docstring).

    Raises :class:`~cytokit.errors.FCSError` when the file cannot be read.
    """
    from .io import read_fcs

    path = Path(path)
    adata = read_fcs(path)
    var = adata.var
    channels = [str(c) for c in var[K.CHANNEL]]
    markers = [str(m) for m in var[K.MARKER]]
    stains = [str(s) for s in var[K.STAIN]]
    roles = [str(r) for r in var[K.ROLE]]
    taken = {_squash(m) for m in markers if m}
    lines = [
        f"# Panel template written by `cytokit panel` from {path.name} ({len(channels)} parameters).",
        "# Every parameter of the file is listed. Markers the file names are filled in. A channel",
        "# without a marker name carries its channel name as a placeholder and a FILL IN comment:",
        "# replace the placeholder with the marker measured on that channel (one edit, e.g.",
        "# `name: VL1-H` -> `name: CD25`), set its role if cytokit does not know the marker, then",
        "#   cytokit run FOLDER --panel this_file.yaml",
        "# Placeholders left as they are change nothing. Roles: scatter, time, viability, lineage,",
        "# functional (known markers get theirs without it). Schema: panels/ldil2_treg.yaml.",
        f"name: {_yaml_text(path.stem + '_panel')}",
        f"description: {_yaml_text('panel template from ' + path.name + '; edit the FILL IN entries')}",
        "markers:",
    ]
    unnamed = 0
    for channel, marker, stain, role in zip(channels, markers, stains, roles, strict=True):
        # an unrecognised stain is kept as an alias, so renaming the entry still finds the channel
        alias = (
            stain if _names_something(stain) and not role and _squash(stain) not in taken else ""
        )
        if alias:
            taken.add(_squash(alias))
        if marker:
            note = f'  # $PnS "{stain}"' if stain and stain != marker else ""
            if not role:
                note = f'  # CHECK: cytokit does not know this name ($PnS "{stain}")'
            lines.append(f"  - name: {_yaml_text(marker)}{note}")
            lines.append(f"    channel: {_yaml_text(channel)}")
            if alias and _squash(alias) != _squash(marker):
                lines.append(f"    aliases: [{_yaml_text(alias)}]")
            if role:
                lines.append(f"    role: {role}")
            continue
        unnamed += 1
        why = f'$PnS "{stain}" names no known marker' if stain else "no marker name in the file"
        fill = f"  # FILL IN: the marker on {channel} ({why}), e.g. CD25"
        entry = [f"  - name: {_yaml_text(channel)}{fill}", f"    channel: {_yaml_text(channel)}"]
        if alias:
            entry.append(f"    aliases: [{_yaml_text(alias)}]")
        entry.append("    role:  # lineage / functional / viability, if cytokit does not know it")
        if _squash(channel) in taken or not _squash(channel):
            # the placeholder would claim a spelling another marker owns: leave it commented out
            entry = ["  # " + e.lstrip() if i == 0 else "  #" + e[1:] for i, e in enumerate(entry)]
        taken.add(_squash(channel))
        lines += entry
    lines.insert(
        8,
        f"# {unnamed} channel(s) to fill in. Markers cytokit knows include: {_SUGGEST}, ..."
        if unnamed
        else "# Every channel is named by the file: edit names or roles only where they are wrong.",
    )
    return "\n".join(lines) + "\n"
