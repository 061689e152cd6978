package main

// Processes around `sqlws-bench`: the server it starts (sqlws serve, --sqlws), the
// /proc sampler that watches the server's RSS and CPU, the machine description that
// goes with every result, and the open-files limit that 10,000 sockets need.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat: 100 on every
// Linux architecture Go supports (sysconf(_SC_CLK_TCK) is not reachable without cgo).
const clockTicks = 100

// ---------------------------------------------------------------------------
// Server

// serverProc is a server the bench started or was pointed at.
type serverProc struct {
	url     string // http://127.0.0.1:PORT
	pid     int    // 0 when unknown (target mode without /proc access)
	db      string
	cmd     *exec.Cmd // nil in target mode
	logPath string
	logFile *os.File
	exited  chan struct{}
}

// startServer runs `exe serve --db path --addr 127.0.0.1:0 extra…` and waits for its
// listening line. Its stderr goes to logPath.
func startServer(ctx context.Context, exe, path, logPath string, extra []string) (*serverProc, error) {
	return startProc(ctx, exe, append([]string{"serve", "--db", path, "--addr", "127.0.0.1:0"}, extra...), path, logPath)
}

// startProc runs exe with args, a server of the database path (if any) that prints
// sqlws serve's listening line, and waits for that line. Its stderr goes to logPath.
func startProc(ctx context.Context, exe string, args []string, path, logPath string) (*serverProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &serverProc{pid: cmd.Process.Pid, db: path, cmd: cmd, logPath: logPath, logFile: logf, exited: make(chan struct{})}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), listeningPrefix); ok {
				select {
				case urlc <- strings.TrimSpace(u):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() { cmd.Wait(); close(s.exited) }()
	select {
	case s.url = <-urlc:
		return s, nil
	case <-s.exited:
		logf.Close()
		return nil, fmt.Errorf("server exited before listening: %s", tailFile(logPath, 2000))
	case <-time.After(60 * time.Second):
	case <-ctx.Done():
	}
	s.stop()
	return nil, fmt.Errorf("server did not print %q within 60s: %s", listeningPrefix, tailFile(logPath, 2000))
}

const listeningPrefix = "sqlws listening on "

// stop sends SIGTERM, waits up to 15s, then kills. It is a no-op in target mode.
func (s *serverProc) stop() {
	if s == nil || s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.logFile.Close()
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// findListenerPID finds the process listening on 127.0.0.1:port (or any address) by
// matching the socket's inode in /proc/net/tcp{,6} against /proc/*/fd. 0 if not found.
func findListenerPID(hostport string) int {
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return 0
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return 0
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 || fs[3] != "0A" { // 0A: LISTEN
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if lp, err := strconv.ParseInt(fs[1][i+1:], 16, 32); err == nil && int(lp) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if l, err := os.Readlink(fd); err == nil && inodes[l] {
			pid, _ := strconv.Atoi(strings.Split(fd, "/")[2])
			return pid
		}
	}
	return 0
}

// ---------------------------------------------------------------------------
// /proc sampling

// procStats is a process's resource use over a measured phase.
type procStats struct {
	CPUSec   float64 `json:"cpu_sec"`
	CPUCores float64 `json:"cpu_cores"` // CPU seconds per wall second
	RSSMaxMB float64 `json:"rss_max_mb"`
	RSSEndMB float64 `json:"rss_end_mb"`
	Threads  int     `json:"threads,omitempty"`
}

func (p procStats) String() string {
	return fmt.Sprintf("CPU %.2f cores (%.1f s), RSS max %.1f MB", p.CPUCores, p.CPUSec, p.RSSMaxMB)
}

// readRSS returns VmRSS in KiB and the thread count of pid.
func readRSS(pid int) (kb int64, threads int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		} else if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return kb, threads, nil
}

// readCPUTicks returns utime+stime of pid in clock ticks.
func readCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')') // comm may contain spaces and parentheses
	if i < 0 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 13 {
		return 0, fmt.Errorf("bad /proc/%d/stat", pid)
	}
	u, _ := strconv.ParseInt(fs[11], 10, 64) // field 14
	s, _ := strconv.ParseInt(fs[12], 10, 64) // field 15
	return u + s, nil
}

// sampler watches one process (pid > 0) or this one (pid == 0, CPU via getrusage).
type sampler struct {
	pid    int
	t0     time.Time
	ticks0 int64
	self0  time.Duration
	stopc  chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	rssMax int64
	rssEnd int64
	thr    int
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startSampler(pid int) *sampler {
	s := &sampler{pid: pid, t0: time.Now(), stopc: make(chan struct{}), done: make(chan struct{})}
	if pid > 0 {
		s.ticks0, _ = readCPUTicks(pid)
	} else {
		s.self0 = selfCPU()
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stopc:
				s.sample()
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	pid := s.pid
	if pid == 0 {
		pid = os.Getpid()
	}
	kb, thr, err := readRSS(pid)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.rssMax = max(s.rssMax, kb)
	s.rssEnd = kb
	s.thr = thr
	s.mu.Unlock()
}

// rssNow samples and returns the current RSS in KiB.
func (s *sampler) rssNow() int64 {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rssEnd
}

func (s *sampler) stop() procStats {
	if s == nil {
		return procStats{}
	}
	close(s.stopc)
	<-s.done
	wall := time.Since(s.t0).Seconds()
	var cpu float64
	if s.pid > 0 {
		t, _ := readCPUTicks(s.pid)
		cpu = float64(t-s.ticks0) / clockTicks
	} else {
		cpu = (selfCPU() - s.self0).Seconds()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return procStats{CPUSec: cpu, CPUCores: cpu / wall, RSSMaxMB: float64(s.rssMax) / 1024,
		RSSEndMB: float64(s.rssEnd) / 1024, Threads: s.thr}
}

// ---------------------------------------------------------------------------
// Machine

type machineInfo struct {
	NProc     int     `json:"nproc"`
	CPUModel  string  `json:"cpu_model"`
	MemTotalG float64 `json:"mem_total_gib"`
	Kernel    string  `json:"kernel"`
	GoVersion string  `json:"go_version"`
	GOMAXPROC int     `json:"gomaxprocs"`
	LoadStart string  `json:"loadavg_start"`
	LoadEnd   string  `json:"loadavg_end,omitempty"`
	NoFile    string  `json:"nofile_limit"`
}

func readMachine() machineInfo {
	m := machineInfo{NProc: runtime.NumCPU(), GoVersion: runtime.Version(), GOMAXPROC: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
				m.MemTotalG = kb / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadStart = loadavg()
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		m.NoFile = fmt.Sprintf("%d/%d", rl.Cur, rl.Max)
	}
	return m
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	fs := strings.Fields(string(b))
	if len(fs) >= 3 {
		return strings.Join(fs[:3], " ")
	}
	return ""
}

// raiseNoFile raises this process's open-files soft limit to the hard limit with an
// explicit setrlimit, so children (server, writer) inherit it (Go restores the
// original soft limit in children unless the program set it itself). It returns the
// resulting soft limit.
func raiseNoFile() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// processNoFile is the soft open-files limit of pid, from /proc/PID/limits.
func processNoFile(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			fs := strings.Fields(line)
			if len(fs) >= 5 {
				v, _ := strconv.ParseUint(fs[3], 10, 64)
				return v
			}
		}
	}
	return 0
}
