#!/bin/bash
# Stands in for supervisor's tests/fixtures/hello.sh, which the 4.3.0 wheel does not ship:
# issue-565's program, a few non-ASCII lines a second apart (test_issue_565 tails three).
for n in 1 2 3 4 5 6 7 8 9 10; do
    echo "The Øresund bridge ends in Malmö - $n"
    sleep 1
done
