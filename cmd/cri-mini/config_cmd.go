package main

import (
	"fmt"
	"os"

	"github.com/cri-mini/cri-mini/pkg/config"
)

func runConfig(args []string) int {
	if len(args) == 1 && args[0] == "default" {
		fmt.Print(config.DefaultTOML)
		return 0
	}
	fmt.Fprintln(os.Stderr, "usage: cri-mini config default")
	return 2
}
