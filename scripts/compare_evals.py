"""Two `wronai eval --json` reports of the same held-out items, tuned side against tuned side: each answer metric's
difference (B minus A) with a paired bootstrap 95% interval (07_eval, "How sure is a figure"). This is how a setting
is chosen on the validation split, e.g. quick_test's learning rate (benchmarks/lr_choice):

    python scripts/compare_evals.py benchmarks/lr_choice/quick_test_lr2e-4_validation.json benchmarks/lr_choice/quick_test_lr6e-4_validation.json
"""  # noqa: E501 (Markdown: a table row or a paragraph is one line)
import argparse, json, sys

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="eval JSON of setting A")
    p.add_argument("b", help="eval JSON of setting B (the difference is B - A)")
    p.add_argument("--config", default="configs/quick_test.yaml",
                   help="a config whose data the reports' benchmark sets resolve with")
    args = p.parse_args(argv)
    a, b = (json.load(open(f, encoding="utf-8")) for f in (args.a, args.b))
    if a["benchmark_sets"] != b["benchmark_sets"]:
        print(f"the reports score different sets: {a['benchmark_sets']} against {b['benchmark_sets']}", file=sys.stderr)
        return 2
    if "test" in " ".join(a["benchmark_sets"]):
        print("note: these are test-split reports; settings are chosen on validation (the test split is read once)",
              file=sys.stderr)
    ids = [x["id"] for x in a["tuned"]["answers"]]
    if ids != [x["id"] for x in b["tuned"]["answers"]]:
        print(
            "the reports hold different items (another sample?); a paired comparison needs the same ones",
            file=sys.stderr,
        )
        return 2
    from wronai.config import load_config
    from wronai.evaluate import benchmark_rows, item_stats, scored
    cfg = load_config(args.config,
                      [f"evaluation.benchmark_sets=[{','.join(a['benchmark_sets'])}]", "evaluation.max_examples=null"])
    by_id = {r["id"]: r for r in benchmark_rows(cfg)}
    rows = [by_id[i] for i in ids]
    want = ("exact_match", "chrf")
    sa, sb = (item_stats(rows, [x["answer"] for x in r["tuned"]["answers"]], want=want) for r in (a, b))
    diff, ci, n = scored(sa, paired=sb)
    own = lambda r, f: (f"{r['tuned']['exact_match'][f]:6.1%} [{r['tuned']['ci95']['exact_match'][f][0]:.1%}, "
                        f"{r['tuned']['ci95']['exact_match'][f][1]:.1%}]")
    print(f"{'exact match':<24} {'A':>22} {'B':>22}   B - A [paired 95%]   n")
    for f, d in diff["exact_match"].items():
        lo, hi = ci["exact_match"][f]
        print(f"{f:<24} {own(a, f):>22} {own(b, f):>22}   {d:+6.1%} [{lo:+.1%}, "
              f"{hi:+.1%}]{'  *' if lo > 0 or hi < 0 else ''}  {n['exact_match'][f]}")
    print(f"{'chrF':<24} {a['tuned']['chrf']:>22.1f} {b['tuned']['chrf']:>22.1f}  "
          f" {diff['chrf']:+6.1f} [{ci['chrf'][0]:+.1f}, {ci['chrf'][1]:+.1f}]")
    print(f"{'perplexity':<24} {a['tuned']['perplexity']:>22.2f} {b['tuned']['perplexity']:>22.2f}")
    print("*: the interval excludes 0")
    return 0

if __name__ == "__main__": raise SystemExit(main())
