"""One module per notification channel; `sync.notify.registry` finds them by file name."""
