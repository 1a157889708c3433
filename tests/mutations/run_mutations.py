"""Plants each bug of `mutations.py` in a temporary copy of the repo and runs its tests.

`python tests/mutations/run_mutations.py [NAME_SUBSTRING ...]` (or `make
mutations`). Prints a table (mutation, caught yes/no) and exits non-zero if
any mutation survives or cannot be planted. The copy holds the files git
tracks plus untracked, not ignored ones; the repo itself is never modified.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from mutations import MUTATIONS  # noqa: E402


def _repo_files():
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and os.path.isfile(os.path.join(ROOT, f))]


def _copy_repo(target):
    for name in _repo_files():
        os.makedirs(os.path.join(target, os.path.dirname(name)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, name), os.path.join(target, name))


def _run_tests(copy, tests):
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=copy + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
               "-m", "not large", *tests]
    return subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)


def main(selected):
    mutations = [m for m in MUTATIONS
                 if not selected or any(s.lower() in m["name"].lower() for s in selected)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="mutations-") as copy:
        _copy_repo(copy)
        for mutation in mutations:
            path = os.path.join(copy, mutation["file"])
            with open(path) as f:
                source = f.read()
            count = source.count(mutation["original"])
            if count != 1:
                rows.append((mutation["name"], f"NOT PLANTED (snippet found {count} times)", 0.0))
                continue
            start = time.time()
            try:
                with open(path, "w") as f:
                    f.write(source.replace(mutation["original"], mutation["mutated"]))
                proc = _run_tests(copy, mutation["tests"])
            finally:
                with open(path, "w") as f:
                    f.write(source)
            # pytest: 1 = tests failed; 0 = all passed; anything else = could not run.
            status = {0: "no", 1: "yes"}.get(proc.returncode, f"ERROR (pytest rc {proc.returncode})")
            if status != "yes":
                print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            rows.append((mutation["name"], status, time.time() - start))
            print(f"{mutation['name']}: caught {status} ({rows[-1][2]:.0f} s)", flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'mutation'.ljust(width)} | caught | seconds |")
    print(f"|{'-' * (width + 2)}|--------|---------|")
    for name, status, seconds in rows:
        print(f"| {name.ljust(width)} | {status.ljust(6)} | {seconds:7.0f} |")
    survivors = [r for r in rows if r[1] != "yes"]
    if survivors:
        print(f"\n{len(survivors)} mutation(s) not caught: {[r[0] for r in survivors]}")
        return 1
    print(f"\nall {len(rows)} mutations caught")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
