// One call of Nango's Node client as the Python tests read it: the value it returned, or the error it raised with
// the server's status and body (axios puts them on err.response). Shared by compat.mjs and methods.mjs.
export async function outcome(fn) {
    try {
        return { ok: true, value: await fn() };
    } catch (err) {
        return {
            ok: false, message: String(err && err.message),
            status: err && err.response ? err.response.status : null,
            data: err && err.response ? err.response.data : null
        };
    }
}
