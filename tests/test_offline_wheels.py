"""scripts/offline_wheels.py without a registry: what it reads, how it packs wheels into folders small enough to carry,
and how the pieces of a wheel too large for one folder come back together there."""
import hashlib, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT/"scripts"))
import offline_wheels as ow  # noqa: E402


def test_have_file_versions_decide_what_is_carried(tmp_path):
    f = tmp_path/"have.txt"
    f.write_text("torch==2.11.0\ntransformers==5.17.0  # the image's\n\npeft\n")
    have = ow.read_have(f)
    assert have == {"torch": "2.11.0", "transformers": "5.17.0", "peft": None}
    f.write_text("torch>=2\n")
    with pytest.raises(ValueError, match="torch>=2"): ow.read_have(f)


def test_marker_environment_is_the_target_machines():
    env = ow.target_env("3.12")
    assert env["python_version"] == "3.12" and env["sys_platform"] == "linux" and env["platform_machine"] == "x86_64"


def test_pack_splits_large_wheels_and_join_restores_them(tmp_path):
    stage, out = tmp_path/"stage", tmp_path/"out"
    stage.mkdir()
    sizes = {"big-1.0-py3-none-any.whl": 2500, "a-1.0-py3-none-any.whl": 600, "b-1.0-py3-none-any.whl": 500,
             "c-1.0-py3-none-any.whl": 300}
    digest = {}
    for name, n in sizes.items():
        data = bytes((i * 7 + len(name)) % 256 for i in range(n))
        (stage/name).write_bytes(data)
        digest[name] = hashlib.sha256(data).hexdigest()
    folders = ow.pack(list(stage.glob("*.whl")), out, 1000)
    assert all(n <= 1000 for _, n in folders) and sum(n for _, n in folders) == sum(sizes.values())
    assert sorted(p.name for p in out.glob("*/big-*")) == [f"big-1.0-py3-none-any.whl.part0{i}" for i in range(3)]
    assert ow.join(out) == ["big-1.0-py3-none-any.whl"]
    whole = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*/*.whl")}
    assert whole == digest and not list(out.glob("*/*.part*"))


def test_bad_arguments_are_named_without_a_traceback(tmp_path):
    r = subprocess.run([sys.executable, "scripts/offline_wheels.py", "--out", str(tmp_path/"w")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--have is required" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_data_travels_whole_or_is_refused_by_name(tmp_path):
    cache, out = tmp_path/"cache", tmp_path/"out"
    for d in ow.DATA: (cache/d/"x").mkdir(parents=True); (cache/d/"x"/"f.txt").write_text(d * 10)
    assert ow.copy_data(out, 10_000, cache) == sum(len(d) * 10 for d in ow.DATA)
    assert sorted(p.name for p in (out/"data").iterdir()) == sorted(ow.DATA)
    with pytest.raises(ValueError, match="more than a folder holds"): ow.copy_data(tmp_path/"o2", 10, cache)
    (cache/"debian"/"x"/"f.txt").unlink(); (cache/"debian"/"x").rmdir(); (cache/"debian").rmdir()
    with pytest.raises(ValueError, match="holds no debian"): ow.copy_data(tmp_path/"o3", 10_000, cache)


def test_a_wheels_requirements_follow_the_target_and_the_extras_asked_for(tmp_path):
    import zipfile
    whl = tmp_path/"demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("demo-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
                   "Requires-Dist: always\nRequires-Dist: onwin; sys_platform == 'win32'\n"
                   "Requires-Dist: old; python_version < '3.10'\nRequires-Dist: country; extra == 'pycountry'\n")
    names = lambda extras: sorted(r.name for r in ow.wheel_requires(whl, ow.target_env("3.12"), extras))
    assert names(()) == ["always"] and names(("pycountry",)) == ["always", "country"]
