/work/wt-tail13/.venv/bin/dandiget download http://127.0.0.1:46205/api/dandisets/000001/ -o /tmp/dandiget-bench-work-xdwo5c3n/out/dandiget -f json
