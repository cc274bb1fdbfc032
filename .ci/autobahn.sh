#!/usr/bin/env bash
# Run the Autobahn|Testsuite fuzzingclient cases 1-7, 9 and 10 against a
# WebSocket echo endpoint, using kosoku (Autobahn case files on Python 3).
#
# usage: .ci/autobahn.sh ws://127.0.0.1:PORT/ws/echo [OUTDIR]
#
# Reports (Autobahn format) go to OUTDIR/<group>/index.{json,html} plus one
# <agent>_case_<id>.{json,html} per case; OUTDIR defaults to a mktemp dir.
#
# Verdict per case (from the report's behavior / behaviorClose):
#   passed  behavior in OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED and
#           behaviorClose not in FAILED, UNCLEAN
#   failed  anything else (FAILED / ERROR behavior, FAILED / UNCLEAN close),
#           and every selected case that produced no report (timeout, crash)
#   A "WRONG CODE" or "FAILED BY CLIENT" close with a passing behavior is
#   printed as a warning but counted as passed (Autobahn shows these as
#   Pass with an orange close cell).
#
# Env: PYTHON (default python3), AUTOBAHN_TIMEOUT (total seconds, default 900).
set -euo pipefail

KOSOKU_VERSION=0.1.0
GROUPS_TO_RUN=(1 2 3 4 5 6 7 9 10)

url=${1:-}
if [[ -z $url || ! $url =~ ^wss?:// ]]; then
    echo "usage: $0 ws://HOST:PORT/PATH [OUTDIR]" >&2
    exit 2
fi
outdir=${2:-$(mktemp -d -t autobahn.XXXXXX)}
mkdir -p "$outdir"
PYTHON=${PYTHON:-python3}
budget=${AUTOBAHN_TIMEOUT:-900}

installed=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null || true)
if [[ $installed != "$KOSOKU_VERSION" ]]; then
    echo "autobahn: installing kosoku==$KOSOKU_VERSION (found: ${installed:-none})"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi

echo "autobahn: target $url, reports in $outdir"
start=$SECONDS
for g in "${GROUPS_TO_RUN[@]}"; do
    left=$((budget - (SECONDS - start)))
    if ((left <= 0)); then
        echo "autobahn: time budget of ${budget}s exhausted, group $g not run" >&2
        continue
    fi
    rm -rf "${outdir:?}/$g"
    rc=0
    # kosoku exits 1 whenever a case is not OK/NON-STRICT/INFORMATIONAL; the
    # verdict below is taken from the reports, so only note abnormal exits.
    timeout --kill-after=10 "$left" "$PYTHON" -c \
        'import sys; from kosoku._cli import main; sys.argv[0] = "kosoku"; main()' \
        "$url" -i "$g.*" -o "$outdir/$g" >"$outdir/kosoku-$g.log" 2>&1 || rc=$?
    if ((rc != 0 && rc != 1)); then
        echo "autobahn: group $g: kosoku exited $rc (124 = timeout), see $outdir/kosoku-$g.log" >&2
    fi
done
echo "autobahn: ran in $((SECONDS - start))s"

"$PYTHON" - "$outdir" "${GROUPS_TO_RUN[@]}" <<'EOF'
import fnmatch, json, os, sys

outdir, groups = sys.argv[1], sys.argv[2:]
from kosoku.cases import CASES  # the case ids kosoku would select

ACCEPT = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
BAD_CLOSE = {"FAILED", "UNCLEAN"}

def key(cid):
    return [int(p) for p in cid.split(".")]

passed = failed = 0
for g in groups:
    wanted = sorted((c for c in CASES if fnmatch.fnmatchcase(c, g + ".*")), key=key)
    gdir = os.path.join(outdir, g)
    results = {}
    try:
        with open(os.path.join(gdir, "index.json")) as f:
            for agent_cases in json.load(f).values():
                results.update(agent_cases)
    except (OSError, ValueError):
        pass
    for cid in sorted(set(wanted) | set(results), key=key):
        r = results.get(cid)
        if r is None:
            failed += 1
            print(f"MISSING {cid}: no result (kosoku timed out or crashed, see kosoku-{g}.log)")
            continue
        b, bc, code = r["behavior"], r["behaviorClose"], r["remoteCloseCode"]
        detail = ""
        try:
            with open(os.path.join(gdir, r["reportfile"])) as f:
                d = json.load(f)
            detail = d["result"] if b not in ACCEPT else d["resultClose"]
        except (OSError, ValueError, KeyError):
            pass
        line = f"{cid}: behavior={b} close={bc} remoteCloseCode={code}: {detail}"
        if b in ACCEPT and bc not in BAD_CLOSE:
            passed += 1
            if bc in ("WRONG CODE", "FAILED BY CLIENT"):
                print("WARN   " + line)
        else:
            failed += 1
            print("FAILED " + line)

print(f"autobahn: {passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
EOF
