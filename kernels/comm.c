/*
 * comm.c: the communicator (contract in kernels/comm.h): a one-process world, or MPI loaded at
 * run time with dlopen when the launcher started several processes; st_comm_split points every
 * collective at a group's communicator (MPI_Comm_split) instead of MPI_COMM_WORLD.
 *
 * Why dlopen: a single-process simtune must start on a machine without libmpi (the common
 * case), and a multi-process launch on a machine whose libmpi is missing must say so instead of
 * the dynamic loader's "cannot open shared object". The MPI headers found at build time give
 * the types; OpenMPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT ...) are addresses of
 * library globals, looked up like the functions; MPICH's are integer constants.
 * libmpi is opened RTLD_GLOBAL: OpenMPI's own plugins resolve their symbols against it.
 */
#include "comm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#ifdef SIMTUNE_HAVE_NCCL
#include "cuda/comm_nccl.h"
#endif

#ifdef SIMTUNE_HAVE_MPI
#include <dlfcn.h>
#include <mpi.h>
#endif

enum { CHUNK_ELEMENTS = 1 << 28 }; /* MPI counts are int: big buffers go in pieces */

static struct {
    int rank, size, local_rank;
    int mpi; /* MPI_Init ran */
} world = {0, 1, 0, 0};

/* The ranks the collectives reach: the world until st_comm_split. */
static struct {
    int rank, size;
} group = {0, 1};

int st_comm_rank(void) { return group.rank; }
int st_comm_size(void) { return group.size; }
int st_comm_local_rank(void) { return world.local_rank; }

/* Collectives talk to other ranks: MPI is up and this rank's group is more than itself. */
static int shared(void) { return world.mpi && group.size > 1; }

/* The first of the variables that is set, as a positive int; 0 when none is. */
static int env_int(const char *const *names, int n_names) {
    for (int i = 0; i < n_names; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v);
    }
    return 0;
}

/* Processes the launcher started: OpenMPI's mpirun, MPICH/Intel (PMI), Slurm's srun. */
static int launched_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
    return env_int(names, 3);
}

static int launched_local_rank(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};
    return env_int(names, 3);
}

/* ---- the watchdog: a collective that never completes ends the job ------------------------- */

static atomic_long op_started_ms; /* 0 while no collective is waiting */
static const char *_Atomic op_name;

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void op_begin(const char *name) {
    atomic_store(&op_name, name);
    atomic_store(&op_started_ms, now_ms());
}

static void op_end(void) { atomic_store(&op_started_ms, 0); }

static void *watchdog_main(void *arg) {
    double timeout = *(double *)arg;
    for (;;) {
        sleep(1);
        long started = atomic_load(&op_started_ms);
        if (started == 0 || (now_ms() - started) / 1000.0 < timeout) continue;
        char in_group[64] = "";
        if (group.size != world.size)
            snprintf(in_group, sizeof in_group, " (rank %d of its group of %d)", group.rank, group.size);
        fprintf(stderr,
                "simtune: rank %d of %d%s: waited %.0f s in %s for the other ranks (SIMTUNE_COMM_TIMEOUT): a rank "
                "that does not print this line died or hangs; ending the job (the last checkpoint written is "
                "intact)\n",
                world.rank, world.size, in_group, timeout, atomic_load(&op_name));
        fflush(stderr);
        _exit(3); /* the launcher then stops every rank and names this one */
    }
    return NULL;
}

static void start_watchdog(void) {
    static double timeout = 600;
    const char *v = getenv("SIMTUNE_COMM_TIMEOUT");
    if (v && atof(v) > 0) timeout = atof(v);
    pthread_t th;
    ST_CHECK(pthread_create(&th, NULL, watchdog_main, &timeout) == 0, "comm: cannot start the watchdog thread");
    pthread_detach(th);
}

/* ---- MPI, loaded at run time -------------------------------------------------------------- */

#ifdef SIMTUNE_HAVE_MPI
static struct {
    void *lib;
    int (*Init)(int *, char ***);
    int (*Finalize)(void);
    int (*Comm_rank)(MPI_Comm, int *);
    int (*Comm_size)(MPI_Comm, int *);
    int (*Comm_split)(MPI_Comm, int, int, MPI_Comm *);
    int (*Comm_free)(MPI_Comm *);
    int (*Allreduce)(const void *, void *, int, MPI_Datatype, MPI_Op, MPI_Comm);
    int (*Allgather)(const void *, int, MPI_Datatype, void *, int, MPI_Datatype, MPI_Comm);
    int (*Bcast)(void *, int, MPI_Datatype, int, MPI_Comm);
    int (*Ibcast)(void *, int, MPI_Datatype, int, MPI_Comm, MPI_Request *);
    int (*Test)(MPI_Request *, int *, MPI_Status *);
    int (*Barrier)(MPI_Comm);
    int (*Send)(const void *, int, MPI_Datatype, int, int, MPI_Comm);
    int (*Recv)(void *, int, MPI_Datatype, int, int, MPI_Comm, MPI_Status *);
    int (*Abort)(MPI_Comm, int);
    MPI_Comm comm_world;
    MPI_Comm comm; /* the group's: comm_world until st_comm_split */
    MPI_Datatype t_float, t_double, t_byte;
    MPI_Op op_sum;
} api;

static int load_symbol(const char *name, void *dst, size_t size) {
    void *sym = dlsym(api.lib, name);
    if (!sym) return st_error_set("%s: %s", ST_MPI_LIBRARY, dlerror());
    memcpy(dst, &sym, size); /* a function pointer or an OpenMPI handle, from the object's address */
    return 0;
}

#define LOAD(field, name) \
    if (load_symbol(name, &api.field, sizeof api.field)) return -1

static int load_handles(void) {
#ifdef OPEN_MPI
    LOAD(comm_world, "ompi_mpi_comm_world");
    LOAD(t_float, "ompi_mpi_float");
    LOAD(t_double, "ompi_mpi_double");
    LOAD(t_byte, "ompi_mpi_byte");
    LOAD(op_sum, "ompi_mpi_op_sum");
#else
    api.comm_world = MPI_COMM_WORLD;
    api.t_float = MPI_FLOAT;
    api.t_double = MPI_DOUBLE;
    api.t_byte = MPI_BYTE;
    api.op_sum = MPI_SUM;
#endif
    return 0;
}

static int load_mpi(void) {
    const char *path = getenv("SIMTUNE_MPI_LIBRARY");
    if (!path || !*path) path = ST_MPI_LIBRARY;
    api.lib = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
    if (!api.lib)
        return st_error_set("launched as %d processes, but MPI cannot be loaded: %s (HINT: apt-get install "
                            "openmpi-bin, or set SIMTUNE_MPI_LIBRARY to the libmpi.so of the mpirun you use)",
                            launched_size(), dlerror());
    LOAD(Init, "MPI_Init");
    LOAD(Finalize, "MPI_Finalize");
    LOAD(Comm_rank, "MPI_Comm_rank");
    LOAD(Comm_size, "MPI_Comm_size");
    LOAD(Comm_split, "MPI_Comm_split");
    LOAD(Comm_free, "MPI_Comm_free");
    LOAD(Allreduce, "MPI_Allreduce");
    LOAD(Allgather, "MPI_Allgather");
    LOAD(Bcast, "MPI_Bcast");
    LOAD(Ibcast, "MPI_Ibcast");
    LOAD(Test, "MPI_Test");
    LOAD(Barrier, "MPI_Barrier");
    LOAD(Send, "MPI_Send");
    LOAD(Recv, "MPI_Recv");
    LOAD(Abort, "MPI_Abort");
    return load_handles();
}

static int join_mpi(int *argc, char ***argv) {
    if (load_mpi()) return -1;
    if (api.Init(argc, argv) != 0) return st_error_set("MPI_Init failed");
    world.mpi = 1;
    api.Comm_rank(api.comm_world, &world.rank);
    api.Comm_size(api.comm_world, &world.size);
    api.comm = api.comm_world;
    group.rank = world.rank;
    group.size = world.size;
    if (world.size != launched_size()) /* e.g. srun without PMI: N copies, each a world of one */
        return st_error_set("launched as %d processes, but MPI joined %d (HINT: srun --mpi=pmix, or mpirun)",
                            launched_size(), world.size);
    return 0;
}
#else
static int join_mpi(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return st_error_set("launched as %d processes, but this simtune was built without MPI (HINT: apt-get install "
                        "libopenmpi-dev and rebuild; tools/install-deps.sh)",
                        launched_size());
}
#endif

int st_comm_init(int *argc, char ***argv) {
    static int done;
    if (done) return 0;
    int size = launched_size();
    if (size <= 1) {
        done = 1;
        return 0;
    }
    if (join_mpi(argc, argv)) return -1;
    world.local_rank = launched_local_rank();
    done = 1;
    start_watchdog();
    return 0;
}

int st_comm_split(int group_size) {
    static int done;
    ST_CHECK(!done && group_size >= 1, "comm: st_comm_split(%d) called twice or with a bad size", group_size);
    done = 1;
    if (world.size % group_size != 0)
        return st_error_set("%d rank%s cannot be split into groups of %d consecutive ranks (%d %% %d = %d)",
                            world.size, world.size == 1 ? "" : "s", group_size, world.size, group_size,
                            world.size % group_size);
    if (group_size == world.size) return 0; /* the world itself */
    group.rank = world.rank % group_size;
    group.size = group_size;
#ifdef SIMTUNE_HAVE_MPI
    if (group_size > 1) api.Comm_split(api.comm_world, world.rank / group_size, world.rank, &api.comm);
#endif
    return 0;
}

void st_comm_finalize(void) {
#ifdef SIMTUNE_HAVE_MPI
    if (world.mpi && api.comm != api.comm_world) api.Comm_free(&api.comm);
    if (world.mpi) api.Finalize();
    world.mpi = 0;
#endif
}

/* ---- collectives ---------------------------------------------------------------------------- */

#ifdef SIMTUNE_HAVE_MPI
static void allreduce_chunks(void *buf, size_t n, size_t elem, MPI_Datatype type, const char *what) {
    op_begin(what);
    for (size_t at = 0; at < n; at += CHUNK_ELEMENTS) {
        size_t count = n - at < CHUNK_ELEMENTS ? n - at : CHUNK_ELEMENTS;
        api.Allreduce(MPI_IN_PLACE, (char *)buf + at * elem, (int)count, type, api.op_sum, api.comm);
    }
    op_end();
}
#endif

void st_comm_allreduce_sum(float *buf, size_t n) {
#ifdef SIMTUNE_HAVE_MPI
    if (shared()) allreduce_chunks(buf, n, sizeof *buf, api.t_float, "allreduce");
#else
    (void)buf;
    (void)n;
#endif
}

void st_comm_allreduce_sum_f64(double *buf, size_t n) {
#ifdef SIMTUNE_HAVE_MPI
    if (shared()) allreduce_chunks(buf, n, sizeof *buf, api.t_double, "allreduce");
#else
    (void)buf;
    (void)n;
#endif
}

void st_comm_allgather(const void *send, size_t bytes, void *recv) {
    if (!shared()) {
        memmove(recv, send, bytes);
        return;
    }
#ifdef SIMTUNE_HAVE_MPI
    ST_CHECK(bytes < CHUNK_ELEMENTS, "comm: allgather of %zu bytes per rank", bytes);
    op_begin("allgather");
    api.Allgather(send, (int)bytes, api.t_byte, recv, (int)bytes, api.t_byte, api.comm);
    op_end();
#endif
}

void st_comm_broadcast(void *buf, size_t bytes, int root) {
#ifdef SIMTUNE_HAVE_MPI
    if (!shared()) return;
    op_begin("broadcast");
    for (size_t at = 0; at < bytes; at += CHUNK_ELEMENTS) {
        size_t count = bytes - at < CHUNK_ELEMENTS ? bytes - at : CHUNK_ELEMENTS;
        api.Bcast((char *)buf + at, (int)count, api.t_byte, root, api.comm);
    }
    op_end();
#else
    (void)buf;
    (void)bytes;
    (void)root;
#endif
}

void st_comm_broadcast_idle(void *buf, size_t bytes, int root) {
#ifdef SIMTUNE_HAVE_MPI
    if (!shared()) return;
    ST_CHECK(bytes < CHUNK_ELEMENTS, "comm: idle broadcast of %zu bytes", bytes);
    MPI_Request request;
    api.Ibcast(buf, (int)bytes, api.t_byte, root, api.comm, &request);
    for (int done = 0, delay_ms = 1;; delay_ms = delay_ms < 64 ? 2 * delay_ms : 100) {
        api.Test(&request, &done, MPI_STATUS_IGNORE);
        if (done) return;
        struct timespec pause = {0, (long)delay_ms * 1000000L}; /* a blocking MPI wait would spin a core */
        nanosleep(&pause, NULL);
    }
#else
    (void)buf;
    (void)bytes;
    (void)root;
#endif
}

void st_comm_barrier(void) {
#ifdef SIMTUNE_HAVE_MPI
    if (!shared()) return;
    op_begin("barrier");
    api.Barrier(api.comm);
    op_end();
#endif
}

#ifdef SIMTUNE_HAVE_MPI
/* Rank 0 receives every other rank's block in rank order, in pieces (no 2 GiB limit). */
static void gather_to_root(const void *send, size_t bytes, char *recv) {
    enum { TAG = 17 };
    uint64_t size = bytes;
    if (group.rank != 0) {
        api.Send(&size, (int)sizeof size, api.t_byte, 0, TAG, api.comm);
        for (size_t at = 0; at < bytes; at += CHUNK_ELEMENTS) {
            size_t count = bytes - at < CHUNK_ELEMENTS ? bytes - at : CHUNK_ELEMENTS;
            api.Send((const char *)send + at, (int)count, api.t_byte, 0, TAG, api.comm);
        }
        return;
    }
    memmove(recv, send, bytes);
    recv += bytes;
    for (int r = 1; r < group.size; r++) {
        api.Recv(&size, (int)sizeof size, api.t_byte, r, TAG, api.comm, MPI_STATUS_IGNORE);
        for (size_t at = 0; at < size; at += CHUNK_ELEMENTS) {
            size_t count = size - at < CHUNK_ELEMENTS ? size - at : CHUNK_ELEMENTS;
            api.Recv(recv + at, (int)count, api.t_byte, r, TAG, api.comm, MPI_STATUS_IGNORE);
        }
        recv += size;
    }
}
#endif

void st_comm_gatherv(const void *send, size_t bytes, void *recv_at_root) {
    if (!shared()) {
        memmove(recv_at_root, send, bytes);
        return;
    }
#ifdef SIMTUNE_HAVE_MPI
    op_begin("gather");
    gather_to_root(send, bytes, recv_at_root);
    op_end();
#endif
}

void st_comm_allreduce_device(st_backend *be, float *device_buf, size_t n) {
    if (!shared()) return;
#ifdef SIMTUNE_HAVE_NCCL
    if (strcmp(be->name, "cuda") == 0) {
        op_begin("NCCL allreduce");
        st_nccl_allreduce_sum(device_buf, n);
        op_end();
        return;
    }
#endif
    if (strcmp(be->name, "cpu") == 0) { /* the CPU backend's device memory is host memory */
        st_comm_allreduce_sum(device_buf, n);
        return;
    }
    float *host = ST_MALLOC(n * sizeof *host);
    be->download(be, host, device_buf, n * sizeof *host);
    st_comm_allreduce_sum(host, n);
    be->upload(be, device_buf, host, n * sizeof *host);
    free(host);
}
