"""`streamlit run dashboard/app.py [-- --db PATH-OR-URL]`: the same dashboard `batchrun dashboard`
starts. The pages live in the batchrun package (batchrun/dashboard/), so an installed batchrun
has them too."""

from batchrun.dashboard.app import main

main()
