package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// removeNATRules deletes the nat-table rules whose comment names the CNI network netName,
// and the chains they jump to. The plugins' DEL removes them; this is for a DEL that failed
// or was interrupted (the bridge plugin deletes the veth before its masquerade rules, so a
// retried DEL would not find them again).
func removeNATRules(netName string) error {
	out, err := exec.Command("iptables", "-t", "nat", "-S").Output()
	if err != nil {
		return fmt.Errorf("list nat rules: %w", err)
	}
	marker := fmt.Sprintf(`name: \"%s\"`, netName)
	var errs []string
	chains := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A ") || !strings.Contains(line, marker) {
			continue
		}
		args := splitRule(line)
		for i, a := range args {
			if a == "-j" && i+1 < len(args) && strings.HasPrefix(args[i+1], "CNI-") {
				chains[args[i+1]] = true
			}
		}
		args[0] = "-D"
		if out, err := exec.Command("iptables", append([]string{"-t", "nat"}, args...)...).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v: %s", line, err, strings.TrimSpace(string(out))))
		}
	}
	for c := range chains {
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.Command("iptables", "-t", "nat", op, c).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Sprintf("%s %s: %v: %s", op, c, err, strings.TrimSpace(string(out))))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("remove nat rules of %s: %s", netName, strings.Join(errs, "; "))
	}
	return nil
}

// splitRule splits one line of `iptables -S` into arguments: words, and double-quoted
// strings in which \" and \\ stand for themselves (as iptables prints comments).
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args
}
