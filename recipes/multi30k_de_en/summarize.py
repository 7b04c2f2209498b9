"""Table of compare.sh: BLEU/TER/chrF per test set (with sacrebleu signatures) and head statistics
per attention normaliser, read from each setting's scores/ and heads/heads.json."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Dict, List


def scores(work: Path) -> Dict[str, Dict[str, str]]:
    out: Dict[str, Dict[str, str]] = {}
    for path in sorted((work / "scores").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        found = {}
        for metric in ("BLEU", "TER", "chrF2"):
            m = re.search(rf"^\s*({metric}\|\S+)\s*=\s*([\d.]+)", text, flags=re.M)
            if m:
                found[metric] = m.group(2)
                found[metric + "_sig"] = m.group(1)
        out[path.stem] = found
    return out


def head_summary(work: Path) -> Dict[str, str]:
    path = work / "heads" / "heads.json"
    if not path.exists():
        return {}
    report = json.loads(path.read_text(encoding="utf-8"))
    modules = report.get("attention", [])
    out = {}
    for kind in ("enc", "dec_self", "dec_cross"):
        mine = [m for m in modules if m.get("type") == kind]
        heads = [h for m in mine for h in m.get("heads", [])]
        alphas = [h["alpha"] for h in heads if h.get("alpha") is not None]
        density = [h["density"] for h in heads if h.get("density") is not None]
        js = [m["js_divergence"] for m in mine if m.get("js_divergence") is not None]
        cell = []
        if alphas:
            cell.append(f"α {min(alphas):.2f}–{max(alphas):.2f}")
        if density:
            cell.append(f"density {sum(density) / len(density):.2f}")
        if js:
            cell.append(f"JS {sum(js) / len(js):.3f}")
        out[kind] = ", ".join(cell)
    return out


def main(argv: List[str]) -> int:
    base, settings = Path(argv[0]), argv[1:]
    rows, heads, signatures = [], [], set()
    for setting in settings:
        work = base / setting
        s = scores(work)
        seconds = (work / "seconds").read_text().strip() if (work / "seconds").exists() else "?"
        cells = []
        for test in ("test_2016_flickr", "test_2017_flickr"):
            got = s.get(test, {})
            cells += [got.get("BLEU", "–"), got.get("TER", "–"), got.get("chrF2", "–")]
            signatures.update(v for k, v in got.items() if k.endswith("_sig"))
        rows.append(f"| {setting} | " + " | ".join(cells) + f" | {seconds} |")
        h = head_summary(work)
        heads.append(f"| {setting} | {h.get('enc', '–')} | {h.get('dec_self', '–')} | {h.get('dec_cross', '–')} |")
    print("| attention | BLEU 2016 | TER 2016 | chrF 2016 | BLEU 2017 | TER 2017 | chrF 2017 "
          "| wall s (stages 5-8) |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    print("| attention | encoder self | decoder self | decoder context |")
    print("|---|---|---|---|")
    print("\n".join(heads))
    print()
    for sig in sorted(signatures):
        print(f"- `{sig}`")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
