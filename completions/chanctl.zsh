#compdef chanctl

_chanctl_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _CHANCTL_COMPLETE=complete_zsh chanctl)
}

compdef _chanctl_completion chanctl
