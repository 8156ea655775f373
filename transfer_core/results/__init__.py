"""What a finished run gives: comparisons, downloads (bundle) and exports."""
