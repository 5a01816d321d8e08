"""The script `batchrun dashboard` hands to `streamlit run` (inside the package, so an installed
batchrun has it)."""

from batchrun.dashboard.app import main

main()
