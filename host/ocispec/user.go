package ocispec

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
)

// passwdEntry is one line of /etc/passwd.
type passwdEntry struct {
	name string
	uid  uint32
	gid  uint32
	home string
}

// groupEntry is one line of /etc/group.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

func parsePasswd(content string) []passwdEntry {
	var out []passwdEntry
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) < 7 || strings.HasPrefix(f[0], "#") {
			continue
		}
		uid, err1 := strconv.ParseUint(f[2], 10, 32)
		gid, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{name: f[0], uid: uint32(uid), gid: uint32(gid), home: f[5]})
	}
	return out
}

func parseGroup(content string) []groupEntry {
	var out []groupEntry
	sc := bufio.NewScanner(strings.NewReader(content))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		gid, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		var members []string
		for _, m := range strings.Split(f[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				members = append(members, m)
			}
		}
		out = append(out, groupEntry{name: f[0], gid: uint32(gid), members: members})
	}
	return out
}

// resolvedUser is the process identity of a container.
type resolvedUser struct {
	uid, gid       uint32
	additionalGids []uint32
	home           string
}

// resolveUser computes the identity the way kubelet's runtimes do: the CRI
// run_as_user / run_as_username win over the image's USER; a numeric user
// missing from /etc/passwd is fine (gid 0 unless given); a user name must
// exist; run_as_group (or the group part of USER) overrides the primary
// group; supplementary groups are the user's groups in /etc/group (unless
// the policy is Strict) plus the pod's.
func resolveUser(imageUser string, runAsUser *int64, runAsUsername string, runAsGroup *int64,
	passwd, group string, supplemental []int64, strict bool) (*resolvedUser, error) {
	users := parsePasswd(passwd)
	groups := parseGroup(group)
	userPart, groupPart, _ := strings.Cut(imageUser, ":")
	switch {
	case runAsUser != nil:
		userPart = strconv.FormatInt(*runAsUser, 10)
		groupPart = ""
	case runAsUsername != "":
		userPart = runAsUsername
		groupPart = ""
	}
	r := &resolvedUser{home: "/"}
	name := ""
	if userPart == "" {
		userPart = "0"
	}
	if n, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		r.uid = uint32(n)
		for _, u := range users {
			if u.uid == r.uid {
				r.gid, r.home, name = u.gid, u.home, u.name
				break
			}
		}
	} else {
		found := false
		for _, u := range users {
			if u.name == userPart {
				r.uid, r.gid, r.home, name, found = u.uid, u.gid, u.home, u.name, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("user %q not found in the image's /etc/passwd", userPart)
		}
	}
	if runAsGroup != nil {
		if *runAsGroup < 0 || *runAsGroup > 1<<32-1 {
			return nil, fmt.Errorf("run_as_group %d out of range", *runAsGroup)
		}
		r.gid = uint32(*runAsGroup)
	} else if groupPart != "" {
		if n, err := strconv.ParseUint(groupPart, 10, 32); err == nil {
			r.gid = uint32(n)
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					r.gid, found = g.gid, true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("group %q not found in the image's /etc/group", groupPart)
			}
		}
	}
	seen := map[uint32]bool{r.gid: true}
	add := func(g uint32) {
		if !seen[g] {
			seen[g] = true
			r.additionalGids = append(r.additionalGids, g)
		}
	}
	if !strict && name != "" {
		for _, g := range groups {
			for _, m := range g.members {
				if m == name {
					add(g.gid)
				}
			}
		}
	}
	for _, g := range supplemental {
		if g < 0 || g > 1<<32-1 {
			return nil, fmt.Errorf("supplemental group %d out of range", g)
		}
		add(uint32(g))
	}
	return r, nil
}
