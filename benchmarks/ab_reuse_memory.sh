#!/bin/bash
# train.reuse_freed_memory on and off, interleaved, on the demo's recipe and SJDL rows (2 epochs
# each): wall seconds of `sjdl train` and the last epoch's images/s. Usage (quiet machine):
#   bash benchmarks/ab_reuse_memory.sh [OUT_DIR] >> benchmarks/results_reuse_memory_ab.txt
out=${1:-runs/ab-reuse}
mkdir -p "$out"
for round in 1 2; do
  for row in recipe sjdl; do
    for flag in true false; do
      if [ $row = recipe ]; then
        ov="preset=recommended data.twins_in_batch=true data.num_ids=8"
      else
        ov="method=sjdl model.firm.output=affine model.firm.scale=4 train.real_every=5"
      fi
      run="$out/$row-$flag-$round"
      s=$(date +%s.%N)
      # shellcheck disable=SC2086
      sjdl train -c demo -o "$run" --overwrite $ov train.epochs=2 train.val_ids=50 \
        train.reuse_freed_memory=$flag train.tensorboard=false > "$run.log" 2>&1
      e=$(date +%s.%N)
      rate=$(grep -oE "[0-9.]+ images/s" "$run.log" | tail -1)
      echo "round $round $row reuse=$flag wall $(python -c "print(round($e - $s, 1))") s, last epoch $rate"
    done
  done
done
