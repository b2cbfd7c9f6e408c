"""scripts/plots.py: every plot dvc.yaml declares drawn as a PNG with an index.html that needs no network."""

import re

from scripts import plots
from tests.helpers import ROOT


def test_the_declared_plots_render_offline_to_pngs_and_a_page_that_loads_nothing(tmp_path, capsys):
    plots.main(["--out", str(tmp_path)])
    page = (tmp_path / "index.html").read_text()
    images = re.findall(r'<img src="([^"]+)">', page)
    assert "metrics__f1_by_model.png" in images and "metrics__finetune_gliner_epochs.png" in images
    for image in images:
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http" not in page and "<script" not in page  # nothing fetched from a CDN
    declared = {path for path, _ in plots.declared_plots(plots.yaml.safe_load((ROOT / "dvc.yaml").read_text()))}
    drawn = {image.removesuffix(".png").replace("__", "/") for image in images}
    not_drawn = declared - {path.rsplit(".", 1)[0] for path in declared if path.rsplit(".", 1)[0] in drawn}
    assert all(path in page for path in not_drawn)  # listed as having no data yet (reports not written here)
    assert "plots in" in capsys.readouterr().out
