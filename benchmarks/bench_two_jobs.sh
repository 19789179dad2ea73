#!/usr/bin/env bash
# Two training jobs at once with one thread each, against one job with two threads, on the
# demo's training step (bench_against.py's worker: seeded tensors, 12 steps after 2 warm-up):
# is it worth running a study's trainings two at a time on a 2-core machine?
#   bash benchmarks/bench_two_jobs.sh > benchmarks/results_two_jobs.txt
cd "$(dirname "$0")/.." || exit 1
W="python benchmarks/bench_against.py --worker demo"
echo "# two jobs with 1 thread each vs one job with 2 threads, demo step; $(date -u +%F) $(nproc) cores"
for m in baseline sjdl; do
  for r in 1 2; do
    echo "$m round $r, one job, 2 threads: $(OMP_NUM_THREADS=2 PYTHONPATH=src $W $m 12 '' | tail -1)"
    (OMP_NUM_THREADS=1 PYTHONPATH=src $W $m 12 '' | tail -1 | sed "s/^/$m round $r, job A, 1 thread: /") &
    (OMP_NUM_THREADS=1 PYTHONPATH=src $W $m 12 '' | tail -1 | sed "s/^/$m round $r, job B, 1 thread: /") &
    wait
  done
done
