"""recipes/multi30k_de_en/summarize.py reads the score files and head reports that compare.sh writes."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLEU_SIG = "BLEU|nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
TER_SIG = "TER|nrefs:1|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0"
CHRF_SIG = "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"


def write_setting(base: Path, name: str, bleu: float, ter: float, chrf: float, alphas) -> None:
    work = base / name
    (work / "scores").mkdir(parents=True)
    (work / "heads").mkdir()
    # fairseq-generate's BLEU line is indented; sacrebleu's TER line is not
    (work / "scores" / "test_2016_flickr.txt").write_text(
        f"        {BLEU_SIG} = {bleu} 65.3/41.2/26.5/17.3 (BP = 1.000)\n{TER_SIG} = {ter}\n"
        f"{CHRF_SIG} = {chrf}\n")
    heads = [{"head": i, "alpha": a, "density": 0.5, "mean_support": 4.0} for i, a in enumerate(alphas)]
    report = {"attention": [{"type": "enc", "layer": 0, "js_divergence": 0.25, "heads": heads}]}
    (work / "heads" / "heads.json").write_text(json.dumps(report))
    (work / "seconds").write_text("60\n")


def test_table_has_scores_signatures_and_head_statistics(tmp_path):
    write_setting(tmp_path, "softmax", 33.31, 52.24, 58.02, [1.0, 1.0])
    write_setting(tmp_path, "alpha_entmax", 34.5, 50.1, 59.1, [1.2, 1.7])
    out = subprocess.run([sys.executable, str(ROOT / "recipes/multi30k_de_en/summarize.py"), str(tmp_path),
                          "softmax", "alpha_entmax"], capture_output=True, text=True, check=True).stdout
    assert "| softmax | 33.31 | 52.24 | 58.02 | – | – | – | 60 |" in out
    assert "| alpha_entmax | 34.5 | 50.1 | 59.1 | – | – | – | 60 |" in out
    assert "α 1.20–1.70, density 0.50, JS 0.250" in out
    assert f"- `{BLEU_SIG}`" in out and f"- `{TER_SIG}`" in out and f"- `{CHRF_SIG}`" in out
