#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyMethodDef methods[] = {
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cframing", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__cframing(void) { return PyModule_Create(&module); }
