// Package state persists the host's pods and containers in an embedded
// store (bbolt) so that a kill -9 of berth at any moment loses nothing.
//
// Every object is written in a phase before the host acts on it (an intent
// record): a record still in PhaseCreating after a restart means the host
// died half-way, and recovery undoes what may have been done. Names are
// reserved in the same transaction as the record they belong to, with CRI
// semantics: the same name again is refused, naming the holder.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Phase is where an object is in its lifecycle.
type Phase string

// Phases. Creating and Removing are intents: the host is acting on the
// object and recovery must finish or undo the act.
const (
	PhaseCreating Phase = "creating"
	PhaseReady    Phase = "ready"    // sandbox
	PhaseNotReady Phase = "notready" // sandbox, stopped
	PhaseCreated  Phase = "created"  // container
	PhaseRunning  Phase = "running"  // container
	PhaseExited   Phase = "exited"   // container
	PhaseRemoving Phase = "removing"
)

// Sandbox is a pod sandbox record.
type Sandbox struct {
	ID             string            `json:"id"`
	Name           string            `json:"name"` // reserved name
	Config         json.RawMessage   `json:"config"`
	RuntimeHandler string            `json:"runtime_handler"`
	Phase          Phase             `json:"phase"`
	CreatedAt      int64             `json:"created_at"` // unix nanoseconds
	Dir            string            `json:"dir"`
	Namespaces     map[string]string `json:"namespaces,omitempty"`
	InitPID        int               `json:"init_pid,omitempty"`
	Handle         []byte            `json:"handle,omitempty"`
	CgroupParent   string            `json:"cgroup_parent,omitempty"`
}

// Container is a container record.
type Container struct {
	ID         string          `json:"id"`
	SandboxID  string          `json:"sandbox_id"`
	Name       string          `json:"name"` // reserved name
	Config     json.RawMessage `json:"config"`
	ImageRef   string          `json:"image_ref"`
	ImageID    string          `json:"image_id"`
	Phase      Phase           `json:"phase"`
	CreatedAt  int64           `json:"created_at"`
	StartedAt  int64           `json:"started_at,omitempty"`
	FinishedAt int64           `json:"finished_at,omitempty"`
	ExitCode   int32           `json:"exit_code"`
	Reason     string          `json:"reason,omitempty"`
	Message    string          `json:"message,omitempty"`
	LogPath    string          `json:"log_path,omitempty"`
	PID        int             `json:"pid,omitempty"`
	Bundle     string          `json:"bundle,omitempty"`
	StopSignal int             `json:"stop_signal,omitempty"`
}

var (
	bucketSandboxes  = []byte("sandboxes")
	bucketContainers = []byte("containers")
	bucketNames      = []byte("names")
)

// ErrNotFound means no record has that ID (or ID prefix).
var ErrNotFound = errors.New("not found")

// ErrAmbiguous means an ID prefix matches several records.
var ErrAmbiguous = errors.New("ambiguous ID prefix")

// NameTakenError means a name is reserved by another object.
type NameTakenError struct {
	Name   string
	Holder string
}

func (e *NameTakenError) Error() string {
	return fmt.Sprintf("name %q is reserved for %s", e.Name, e.Holder)
}

// Store is the host's persistent state.
type Store struct {
	db *bolt.DB
}

// Open opens (creating) the store at path.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSandboxes, bucketContainers, bucketNames} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init state: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

func put(tx *bolt.Tx, bucket []byte, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put([]byte(id), b)
}

func reserve(tx *bolt.Tx, name, id string) error {
	names := tx.Bucket(bucketNames)
	if holder := names.Get([]byte(name)); holder != nil && string(holder) != id {
		return &NameTakenError{Name: name, Holder: string(holder)}
	}
	return names.Put([]byte(name), []byte(id))
}

func release(tx *bolt.Tx, name, id string) error {
	names := tx.Bucket(bucketNames)
	if holder := names.Get([]byte(name)); holder != nil && string(holder) == id {
		return names.Delete([]byte(name))
	}
	return nil
}

// CreateSandbox reserves the sandbox's name and writes its record, in one
// transaction. The ID must be new.
func (s *Store) CreateSandbox(sb *Sandbox) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSandboxes).Get([]byte(sb.ID)) != nil {
			return fmt.Errorf("sandbox %s exists", sb.ID)
		}
		if err := reserve(tx, "sandbox/"+sb.Name, sb.ID); err != nil {
			return err
		}
		return put(tx, bucketSandboxes, sb.ID, sb)
	})
}

// UpdateSandbox rewrites an existing record.
func (s *Store) UpdateSandbox(sb *Sandbox) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketSandboxes).Get([]byte(sb.ID)) == nil {
			return fmt.Errorf("sandbox %s: %w", sb.ID, ErrNotFound)
		}
		return put(tx, bucketSandboxes, sb.ID, sb)
	})
}

// DeleteSandbox removes the record and releases its name; deleting an
// absent record succeeds.
func (s *Store) DeleteSandbox(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketSandboxes).Get([]byte(id))
		if raw == nil {
			return nil
		}
		var sb Sandbox
		if err := json.Unmarshal(raw, &sb); err != nil {
			return err
		}
		if err := release(tx, "sandbox/"+sb.Name, id); err != nil {
			return err
		}
		return tx.Bucket(bucketSandboxes).Delete([]byte(id))
	})
}

// Sandbox returns the record with that ID or unique ID prefix.
func (s *Store) Sandbox(idOrPrefix string) (*Sandbox, error) {
	var sb Sandbox
	err := s.db.View(func(tx *bolt.Tx) error {
		raw, err := lookup(tx.Bucket(bucketSandboxes), idOrPrefix)
		if err != nil {
			return fmt.Errorf("sandbox %q: %w", idOrPrefix, err)
		}
		return json.Unmarshal(raw, &sb)
	})
	if err != nil {
		return nil, err
	}
	return &sb, nil
}

// Sandboxes lists every sandbox, oldest first.
func (s *Store) Sandboxes() ([]*Sandbox, error) {
	var out []*Sandbox
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSandboxes).ForEach(func(_, v []byte) error {
			var sb Sandbox
			if err := json.Unmarshal(v, &sb); err != nil {
				return err
			}
			out = append(out, &sb)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, err
}

// CreateContainer reserves the container's name and writes its record.
func (s *Store) CreateContainer(c *Container) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketContainers).Get([]byte(c.ID)) != nil {
			return fmt.Errorf("container %s exists", c.ID)
		}
		if tx.Bucket(bucketSandboxes).Get([]byte(c.SandboxID)) == nil {
			return fmt.Errorf("sandbox %s: %w", c.SandboxID, ErrNotFound)
		}
		if err := reserve(tx, "container/"+c.Name, c.ID); err != nil {
			return err
		}
		return put(tx, bucketContainers, c.ID, c)
	})
}

// UpdateContainer rewrites an existing record.
func (s *Store) UpdateContainer(c *Container) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketContainers).Get([]byte(c.ID)) == nil {
			return fmt.Errorf("container %s: %w", c.ID, ErrNotFound)
		}
		return put(tx, bucketContainers, c.ID, c)
	})
}

// DeleteContainer removes the record and releases its name.
func (s *Store) DeleteContainer(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketContainers).Get([]byte(id))
		if raw == nil {
			return nil
		}
		var c Container
		if err := json.Unmarshal(raw, &c); err != nil {
			return err
		}
		if err := release(tx, "container/"+c.Name, id); err != nil {
			return err
		}
		return tx.Bucket(bucketContainers).Delete([]byte(id))
	})
}

// Container returns the record with that ID or unique ID prefix.
func (s *Store) Container(idOrPrefix string) (*Container, error) {
	var c Container
	err := s.db.View(func(tx *bolt.Tx) error {
		raw, err := lookup(tx.Bucket(bucketContainers), idOrPrefix)
		if err != nil {
			return fmt.Errorf("container %q: %w", idOrPrefix, err)
		}
		return json.Unmarshal(raw, &c)
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// Containers lists every container (of one sandbox when sandboxID is set),
// oldest first.
func (s *Store) Containers(sandboxID string) ([]*Container, error) {
	var out []*Container
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketContainers).ForEach(func(_, v []byte) error {
			var c Container
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			if sandboxID == "" || c.SandboxID == sandboxID {
				out = append(out, &c)
			}
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, err
}

// lookup finds a value by exact key or unique key prefix.
func lookup(b *bolt.Bucket, idOrPrefix string) ([]byte, error) {
	if idOrPrefix == "" {
		return nil, ErrNotFound
	}
	if v := b.Get([]byte(idOrPrefix)); v != nil {
		return v, nil
	}
	c := b.Cursor()
	var found []byte
	for k, v := c.Seek([]byte(idOrPrefix)); k != nil && strings.HasPrefix(string(k), idOrPrefix); k, v = c.Next() {
		if found != nil {
			return nil, ErrAmbiguous
		}
		found = v
	}
	if found == nil {
		return nil, ErrNotFound
	}
	return found, nil
}
